"""GitHub webhook runs: a signed delivery through a running daemon fetches the one pull request
it names, and a forged one changes nothing; a targeted run, step by step against the simulator,
follows a renamed repository, links Jira keys, skips what polling decides about, and leaves
newer rows alone when an older page is loaded again."""

from __future__ import annotations

import asyncio
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
from etld.simulator.faults import ApiCallCounter
from etld.simulator.github import create_github_app
from etld.simulator.github_data import SiteOptions, generate_github
from etld.simulator.github_model import PullRecord
from etld.sources.base import get_source
from etld.sync import SyncRequest, run_sync
from etld.webhooks.verify import signature
from tests.integration.test_github_support import (
    NOW,
    TOKEN,
    GitHub,
    MakeGitHub,
    add_work_items,
    github_factory,
    rows,
)
from tests.integration.test_jira_support import quiet_logs  # noqa: F401
from tests.integration.test_webhooks import wait_for_webhook_run

HOOK_ENV = "ETLD_TEST_GITHUB_HOOK_SECRET"
HOOK_SECRET = "github-hook-secret-0123456789"
TOKEN_ENV = "ETLD_TEST_HOOK_GITHUB_TOKEN"
SMALL = SiteOptions(big=False)
Start = Callable[..., Any]
ROW_SQL = """
SELECT p.external_id, p.title, p.state, p.merged, p.updated, p.last_updated_at,
       (SELECT count(*) FROM pr_commits c WHERE c.pull_request_id = p.id) AS commits,
       (SELECT count(*) FROM pr_reviews v WHERE v.pull_request_id = p.id) AS reviews,
       (SELECT count(*) FROM pr_comments m WHERE m.pull_request_id = p.id AND m.kind = 'review')
           AS review_comments,
       (SELECT count(*) FROM pr_comments m WHERE m.pull_request_id = p.id AND m.kind = 'issue')
           AS issue_comments
  FROM pull_requests p
"""


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


@pytest.fixture
def make_github(
    pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> MakeGitHub:
    return github_factory(pool, aiohttp_server, monkeypatch)


def sec(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms // 1000, UTC)


async def pull_rows(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    return {r["external_id"]: r for r in await rows(pool, ROW_SQL)}


def pull_paths(full_name: str, number: int) -> set[str]:
    """The API paths a targeted run may call for one pull request."""
    base = f"/repos/{full_name}"
    return {
        f"{base}/pulls/{number}",
        f"{base}/pulls/{number}/commits",
        f"{base}/pulls/{number}/reviews",
        f"{base}/pulls/{number}/comments",
        f"{base}/issues/{number}/comments",
    }


def truth_counts(gh_site: Any, rec: PullRecord) -> dict[str, int]:
    d = gh_site.detail(rec)
    return {
        "commits": len(d.commits),
        "reviews": len(d.reviews),
        "review_comments": len(d.review_comments),
        "issue_comments": len(d.issue_comments),
    }


def counts_of(row: dict[str, Any]) -> dict[str, int]:
    return {k: row[k] for k in ("commits", "reviews", "review_comments", "issue_comments")}


async def test_a_signed_delivery_updates_exactly_its_pull_request(
    make_config: Callable[..., Config],
    start_daemon: Start,
    aiohttp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setenv(HOOK_ENV, HOOK_SECRET)
    site = generate_github(24, 5, now=NOW, options=SMALL)
    counter = ApiCallCounter()
    server: TestServer = await aiohttp_server(create_github_app(site, token=TOKEN, counter=counter))
    config = make_config(
        workers={"free": {"extraction": 2, "transform": 2, "embedding": 0}},
        pipeline={"job_workers": 1},
        scheduler={"enabled": False},
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[
            {
                "tenant": "acme",
                "name": "github",
                "provider": "github",
                "base_url": str(server.make_url("")).rstrip("/"),
                "token_env": TOKEN_ENV,
                "allow_private_network": True,
                "settings": {
                    "organization": "acme",
                    "webhook_secret_env": HOOK_ENV,
                    "webhook_window": 1.0,
                },
            }
        ],
    )
    daemon: Daemon = await start_daemon(config, frozenset({"workers", "web"}))
    pool = daemon.pool
    assert pool is not None
    first = await run_sync(
        config, SyncRequest("acme", "github", timeout=60), say=lambda _: None, daemon=daemon
    )
    assert first.outcome == "FINISHED", first.error
    async with pool.acquire() as conn:
        job = await conn.fetchrow("SELECT integration_id, last_sync_date FROM etl_jobs")
    before = await pull_rows(pool)
    api = site.repo("acme/api")
    assert api is not None
    rec = next(p for p in site.pulls_of(api) if p.state == "open")
    assert counts_of(before[str(rec.id)]) == truth_counts(site, rec)

    site.touch(
        "acme/api",
        rec.number,
        NOW + timedelta(days=2),
        commits=1,
        reviews=1,
        review_comments=1,
        issue_comments=1,
        merge=True,
        title="Ship the new login",
    )
    counter.reset()
    payload = {
        "action": "closed",
        "repository": {"full_name": "acme/api"},
        "pull_request": {"number": rec.number, "id": rec.id, "title": rec.title},
    }
    body = orjson.dumps(payload)
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1"}
    hook = f"http://127.0.0.1:{daemon.services['web_port']}/webhooks/github/"
    hook += str(job["integration_id"])
    async with aiohttp.ClientSession() as http:
        forged = {**headers, "X-Hub-Signature-256": signature("not-the-secret-at-all", body)}
        async with http.post(hook, data=body, headers=forged) as answer:
            assert answer.status == 401
        await asyncio.sleep(1.5)  # past the window: a forged delivery starts nothing
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM webhook_events") == 0
            assert await conn.fetchval("SELECT count(*) FROM webhook_targets") == 0
            assert (
                await conn.fetchval("SELECT count(*) FROM etl_job_runs WHERE trigger = 'webhook'")
                == 0
            )
        assert await pull_rows(pool) == before
        assert counter.total == 0

        signed = {**headers, "X-Hub-Signature-256": signature(HOOK_SECRET, body)}
        async with http.post(hook, data=body, headers=signed) as answer:
            assert answer.status == 202
            assert (await answer.json())["queued"] == [f"pull_request:acme/api#{rec.number}"]

    run = await wait_for_webhook_run(pool)
    assert run["outcome"] == "FINISHED", run["error"]
    assert run["config"]["targets"] == [
        {"kind": "pull_request", "repository": "acme/api", "number": rec.number, "id": str(rec.id)}
    ]
    # Only that pull request was read: itself, its commits, reviews and two comment lists.
    assert set(counter.per_path()) == pull_paths("acme/api", rec.number), counter.per_path()
    assert counter.total == 5
    async with pool.acquire() as conn:
        types = await conn.fetch(
            "SELECT DISTINCT type FROM raw_extraction_data WHERE run_id = $1", run["id"]
        )
        job_after = await conn.fetchrow("SELECT last_sync_date, status FROM etl_jobs")
    assert {t["type"] for t in types} == {
        "github_pulls",
        "github_pull_details",
        "github_review_comments",
        "github_issue_comments",
    }
    after = await pull_rows(pool)
    mine = after.pop(str(rec.id))
    assert (mine["title"], mine["state"], mine["merged"], mine["updated"]) == (
        "Ship the new login",
        "closed",
        True,
        sec(rec.updated_ms),
    )
    assert counts_of(mine) == truth_counts(site, rec)
    assert after == {k: v for k, v in before.items() if k != str(rec.id)}
    # Polling stays the source of truth: the incremental window did not move.
    assert job_after["last_sync_date"] == job["last_sync_date"]
    assert job_after["status"]["overall"] == "FINISHED"


async def targeted_sync(gh: GitHub, targets: list[dict[str, Any]]) -> dict[str, Any]:
    run = await gh.new_run(full_sync=False, last_sync_date=NOW, config={"targets": targets})
    return await gh.sync(run)


async def test_a_targeted_run_follows_renames_and_skips_what_polling_decides(
    make_github: MakeGitHub,
) -> None:
    gh = await make_github(20, options=SMALL, settings={"repositories": ["acme/api", "acme/web"]})
    site = gh.site
    assert [s.name for s in get_source("github").steps({"targets": [{}]})] == [
        "github_pull_requests",
        "github_comments",
    ]
    full = await gh.sync(await gh.new_run(full_sync=True))
    web = site.repo("acme/web")
    assert web is not None
    rec = site.pulls_of(web)[0]
    links = await add_work_items(gh.pool, gh.tenant_id, ["OPS-7"])
    site.touch("acme/web", rec.number, NOW + timedelta(days=1), issue_comments=2, title="OPS-7 Go")
    site.rename("acme/web", "webapp")
    before = await pull_rows(gh.pool)
    gh.counter.reset()
    gh.statuses.clear()

    await targeted_sync(
        gh,
        [
            # The old name: GitHub redirects, and the run goes on under the new one.
            {"kind": "pull_request", "repository": "acme/web", "number": rec.number},
            {"kind": "pull_request", "repository": "ACME/Web", "number": rec.number},
            {"kind": "pull_request", "repository": "acme/api", "number": 9999},
            # Not among the configured repositories: read, found unsynced, and left alone.
            {"kind": "pull_request", "repository": "acme/mobile", "number": 1},
            {"kind": "issue", "id": "10001"},
        ],
    )
    assert gh.statuses[301] == 1  # one redirect: the rest asks for the new name
    assert gh.statuses[404] == 1  # the unknown number, skipped
    paths = gh.counter.per_path()
    web_id = f"/repositories/{web.id}/pulls/{rec.number}"
    assert set(paths) == {
        f"/repos/acme/web/pulls/{rec.number}",
        web_id,
        *(pull_paths("acme/webapp", rec.number) - {f"/repos/acme/webapp/pulls/{rec.number}"}),
        "/repos/acme/api/pulls/9999",
        "/repos/acme/mobile/pulls/1",
    }, paths
    assert all(n == 1 for n in paths.values()), paths

    after = await pull_rows(gh.pool)
    mine = after.pop(str(rec.id))
    assert (mine["title"], mine["updated"]) == ("OPS-7 Go", sec(rec.updated_ms))
    assert counts_of(mine) == truth_counts(site, rec)
    assert after == {k: v for k, v in before.items() if k != str(rec.id)}
    linked = await rows(
        gh.pool,
        "SELECT work_item_id, repository_full_name, pr_number, link_source "
        "FROM work_items_prs_links WHERE pull_request_id IS NOT NULL AND work_item_id = $1",
        links["OPS-7"],
    )
    assert linked == [
        {
            "work_item_id": links["OPS-7"],
            "repository_full_name": "acme/webapp",
            "pr_number": rec.number,
            "link_source": "title",
        }
    ]

    # The full sync's older pages, loaded again, leave the newer row as it is.
    run = gh.run
    assert run is not None
    for step in get_source("github").steps({})[1:]:
        store = full[step.name][0]
        await gh.transform(run, step, store.raw_ids)
    again = await pull_rows(gh.pool)
    assert {k: (v["title"], v["updated"]) for k, v in again.items()} == {
        k: (v["title"], v["updated"]) for k, v in {**after, str(rec.id): mine}.items()
    }
    assert counts_of(again[str(rec.id)]) == truth_counts(site, rec)


async def test_a_repeated_targeted_run_reads_unchanged_lists_as_304s(
    make_github: MakeGitHub,
) -> None:
    gh = await make_github(12, options=SMALL, settings={"repositories": ["acme/api"]})
    site = gh.site
    await gh.sync(await gh.new_run(full_sync=True))
    api = site.repo("acme/api")
    assert api is not None
    rec = site.pulls_of(api)[0]
    target = [{"kind": "pull_request", "repository": "acme/api", "number": rec.number}]
    await targeted_sync(gh, target)
    gh.statuses.clear()
    gh.counter.reset()
    result = await targeted_sync(gh, target)
    # The pull request itself is always read; its four lists answer 304 and store nothing.
    assert gh.counter.total == 5
    assert gh.statuses[304] == 4
    comments = result["github_comments"][0]
    assert comments.raw_ids == []
