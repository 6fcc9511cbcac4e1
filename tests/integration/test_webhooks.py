"""Webhooks through a running daemon: proofs checked, deliveries recorded, bursts collapsed.

GitHub: a signed delivery is accepted and queues its pull request; a forged, an unsigned and
an oversized one are refused and change nothing. Jira: ten events for one issue within a
second make one targeted run, which fetches that issue alone (one search by id) and updates
its work item, without moving the job's last_sync_date.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestServer

from etld.config import Config
from etld.daemon import Daemon
from etld.simulator import ApiCallCounter, FaultPlan, create_jira_app, generate_site
from etld.store.queries import SQL
from etld.sync import SyncRequest, run_sync
from etld.webhooks.verify import seal_webhook_secret, signature

HOOK_ENV = "ETLD_TEST_WEBHOOK_SECRET"
HOOK_SECRET = "jira-hook-secret-0123456789"
GITHUB_SECRET = "github-hook-secret-0123456789"
SECRET_KEY = "s" * 32
TOKEN_ENV = "ETLD_TEST_HOOK_JIRA_TOKEN"
NOW = datetime(2025, 3, 1, tzinfo=UTC)
Start = Callable[..., Any]


@pytest.fixture
async def start_daemon() -> AsyncIterator[Start]:
    daemons: list[Daemon] = []

    async def start(config: Config, roles: frozenset[str]) -> Daemon:
        daemon = Daemon(config, roles)
        daemons.append(daemon)
        await daemon.start()
        return daemon

    yield start
    for daemon in daemons:
        await daemon.shutdown()


def url(daemon: Daemon, path: str) -> str:
    return f"http://127.0.0.1:{daemon.services['web_port']}{path}"


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    async with pool.acquire() as conn:
        events = await conn.fetchval("SELECT count(*) FROM webhook_events")
        targets = await conn.fetchval("SELECT count(*) FROM webhook_targets")
    return int(events), int(targets)


async def test_github_signatures_are_verified(
    make_config: Callable[..., Config], start_daemon: Start
) -> None:
    config = make_config(
        web={"max_body_bytes": 4096},
        security={"secret_key": SECRET_KEY},
        scheduler={"enabled": False},
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[
            {
                "tenant": "acme",
                "name": "gh",
                "provider": "github",
                "base_url": "https://api.github.com",
                # Long enough that no run starts while the test looks at the queue.
                "settings": {"webhook_window": 300},
            }
        ],
    )
    daemon: Daemon = await start_daemon(config, frozenset({"web"}))
    pool = daemon.pool
    assert pool is not None
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT id, tenant_id FROM integrations WHERE name = 'gh'")
        sealed = seal_webhook_secret(SECRET_KEY, row["tenant_id"], row["id"], GITHUB_SECRET)
        await conn.execute(SQL["webhooks.set_secret"], row["id"], sealed)
    hook = url(daemon, f"/webhooks/github/{row['id']}")
    payload = {
        "action": "opened",
        "repository": {"full_name": "acme/api"},
        "pull_request": {"number": 42, "id": 4242, "title": "Add things"},
    }
    body = orjson.dumps(payload)
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1"}
    async with aiohttp.ClientSession() as http:
        forged = {**headers, "X-Hub-Signature-256": signature("not-the-secret-at-all", body)}
        for extra in (forged, headers, {**headers, "X-Hub-Signature-256": "sha256="}):
            async with http.post(hook, data=body, headers=extra) as answer:
                assert answer.status == 401
                assert (await answer.json())["error"]["code"] == "unauthorized"
        # The right signature on another integration id, or on the Jira route, is refused too.
        signed = {**headers, "X-Hub-Signature-256": signature(GITHUB_SECRET, body)}
        for other in (f"/webhooks/github/{row['id'] + 1}", f"/webhooks/jira/{row['id']}"):
            async with http.post(url(daemon, other), data=body, headers=signed) as answer:
                assert answer.status == 401
        big = orjson.dumps({**payload, "padding": "x" * 5000})
        oversized = {**headers, "X-Hub-Signature-256": signature(GITHUB_SECRET, big)}
        async with http.post(hook, data=big, headers=oversized) as answer:
            assert answer.status == 413
        assert await counts(pool) == (0, 0)

        async with http.post(hook, data=body, headers=signed) as answer:
            assert answer.status == 202
            assert await answer.json() == {
                "event": "pull_request.opened",
                "queued": ["pull_request:acme/api#42"],
            }
        ping = orjson.dumps({"zen": "Keep it logically awesome."})
        ping_headers = {
            "X-GitHub-Event": "ping",
            "X-Hub-Signature-256": signature(GITHUB_SECRET, ping),
        }
        async with http.post(hook, data=ping, headers=ping_headers) as answer:
            assert answer.status == 202
            assert (await answer.json())["queued"] == []
    async with pool.acquire() as conn:
        events = await conn.fetch("SELECT event, delivery_id FROM webhook_events ORDER BY id")
        target = await conn.fetchrow("SELECT * FROM webhook_targets")
    assert [tuple(e) for e in events] == [("pull_request.opened", "d-1"), ("ping", None)]
    assert target["target"] == {
        "kind": "pull_request",
        "repository": "acme/api",
        "number": 42,
        "id": "4242",
    }
    assert target["dispatched_at"] is None  # queued for the GitHub source's targeted run


async def wait_for_webhook_run(pool: asyncpg.Pool, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with pool.acquire() as conn:
            run = await conn.fetchrow(
                "SELECT * FROM etl_job_runs WHERE trigger = 'webhook' AND outcome <> 'RUNNING'"
            )
        if run is not None:
            return dict(run)
        await asyncio.sleep(0.1)
    raise AssertionError("no webhook run ended in time")


async def test_jira_burst_makes_one_targeted_extraction(
    make_config: Callable[..., Config],
    start_daemon: Start,
    aiohttp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "jira-token")
    monkeypatch.setenv(HOOK_ENV, HOOK_SECRET)
    site = generate_site(30, 5, now=NOW)
    counter = ApiCallCounter()
    app = create_jira_app(site, faults=FaultPlan(requests_per_second=10_000), counter=counter)
    server: TestServer = await aiohttp_server(app)
    config = make_config(
        workers={"free": {"extraction": 2, "transform": 2, "embedding": 0}},
        pipeline={"job_workers": 1},
        scheduler={"enabled": False},
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[
            {
                "tenant": "acme",
                "name": "jira",
                "provider": "jira",
                "base_url": str(server.make_url("")).rstrip("/"),
                "username": "etl@example.com",
                "token_env": TOKEN_ENV,
                "allow_private_network": True,
                "settings": {"webhook_secret_env": HOOK_ENV, "webhook_window": 1.0},
            }
        ],
    )
    daemon: Daemon = await start_daemon(config, frozenset({"workers", "web"}))
    pool = daemon.pool
    assert pool is not None
    first = await run_sync(
        config, SyncRequest("acme", "jira", timeout=60), say=lambda _: None, daemon=daemon
    )
    assert first.outcome == "FINISHED", first.error
    async with pool.acquire() as conn:
        job = await conn.fetchrow("SELECT id, integration_id, last_sync_date FROM etl_jobs")
        before = {
            r["external_id"]: (r["summary"], r["last_updated_at"])
            for r in await conn.fetch(
                "SELECT external_id, summary, last_updated_at FROM work_items"
            )
        }

    key = site.issue_keys()[3]
    site.touch([key], NOW + timedelta(days=2), transition=True)
    truth = site.issue(key)
    counter.reset()
    payload = {"webhookEvent": "jira:issue_updated", "issue": {"id": truth.id, "key": key}}
    hook = url(daemon, f"/webhooks/jira/{job['integration_id']}")
    async with aiohttp.ClientSession() as http:

        async def deliver(n: int) -> int:
            await asyncio.sleep(n * 0.05)
            body = orjson.dumps({**payload, "timestamp": n})
            async with http.post(hook, data=body, params={"secret": HOOK_SECRET}) as answer:
                return answer.status

        statuses = await asyncio.gather(*(deliver(n) for n in range(10)))
        assert statuses == [202] * 10
        async with http.post(
            hook, data=orjson.dumps(payload), params={"secret": "wrong"}
        ) as answer:
            assert answer.status == 401

    run = await wait_for_webhook_run(pool)
    assert run["outcome"] == "FINISHED", run["error"]
    await asyncio.sleep(1.5)  # past another window: the burst stays one run
    async with pool.acquire() as conn:
        runs = await conn.fetch("SELECT id FROM etl_job_runs WHERE trigger = 'webhook'")
        targets = await conn.fetch("SELECT * FROM webhook_targets")
        events = await conn.fetchval("SELECT count(*) FROM webhook_events")
        pages = await conn.fetch(
            "SELECT type, raw_payload::json AS raw_payload FROM raw_extraction_data"
            " WHERE run_id = $1",
            run["id"],
        )
        after = {
            r["external_id"]: (r["summary"], r["last_updated_at"])
            for r in await conn.fetch(
                "SELECT external_id, summary, last_updated_at FROM work_items"
            )
        }
        job_after = await conn.fetchrow("SELECT last_sync_date, status FROM etl_jobs")
    assert len(runs) == 1
    assert events == 10
    assert [(t["events"], t["run_id"], t["outcome"]) for t in targets] == [
        (10, run["id"], "queued")
    ]
    assert run["config"]["targets"] == [{"kind": "issue", "id": truth.id, "key": key}]
    # Only that issue was fetched: one search, one page holding it alone.
    assert counter.count("/rest/api/3/search/jql") == 1
    assert counter.total == 1, counter.per_path()
    assert [p["type"] for p in pages] == ["jira_issues"]
    assert [i["id"] for i in pages[0]["raw_payload"]["search"]["issues"]] == [truth.id]
    # That work item, and only it, changed.
    assert after[truth.id][0] == truth.summary != before[truth.id][0]
    assert {k: v for k, v in after.items() if k != truth.id} == {
        k: v for k, v in before.items() if k != truth.id
    }
    # Polling stays the source of truth: the incremental window did not move.
    assert job_after["last_sync_date"] == job["last_sync_date"]
    assert job_after["status"]["overall"] == "FINISHED"
