"""The queues JSON API with a running daemon: queue health, dead letters, worker restarts."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from etld import dlq
from etld.broker.control import daemon_identity
from etld.broker.publish import Publisher
from etld.broker.topology import Topology
from etld.config import Config
from etld.daemon import Daemon
from etld.store.queries import SQL
from etld.web.app import create_app
from etld.workers import Delivery, HandlerContext
from tests.integration.test_api_jobs import (
    INTERNAL_KEY,
    add_token,
    build_world,
    web_config,
)
from tests.integration.test_broker_support import (
    extraction,
    queue_counts,
    running_daemon,
    wait_until,
)

QUEUE = "extraction_queue_free"
Client = TestClient[web.Request, web.Application]


@dataclass
class Env:
    daemon: Daemon
    client: Client
    pool: asyncpg.Pool
    config: Config
    tenants: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    # (seq, x-etld-requeued-from) of every message the extraction handler accepted.
    handled: list[tuple[int, Any]] = field(default_factory=list)
    broken: bool = True

    def auth(self, who: str) -> dict[str, str]:
        if who == "service":
            return {"X-Internal-Auth": INTERNAL_KEY}
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    @property
    def publisher(self) -> Publisher:
        publisher: Publisher = self.daemon.services["publisher"]
        return publisher


@pytest.fixture
async def env(
    make_config: Callable[..., Config], pool: asyncpg.Pool, aiohttp_client: Any
) -> AsyncIterator[Env]:
    """A workers daemon on tier free (no transform consumer), its web app, two tenants."""
    config = make_config(
        pipeline={"tiers": ["free"]},
        workers={"free": {"transform": 0}},
        rabbitmq={"max_retries": {"extraction": 1}},
        security={"internal_auth_key": INTERNAL_KEY},
    )
    state: list[Env] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        if state[0].broken:
            raise RuntimeError("mapping table missing")
        state[0].handled.append((delivery.raw["seq"], delivery.headers.get("x-etld-requeued-from")))

    async with running_daemon(config, {"extraction": handle}) as daemon:
        client = await aiohttp_client(create_app(daemon))
        env = Env(daemon, client, pool, config)
        state.append(env)
        for name in ("alpha", "beta"):
            async with pool.acquire() as conn:
                await conn.fetchval(SQL["seed.upsert_tenant"], name, "free", True)
                tenant_id = int(await conn.fetchval(SQL["seed.tenant_id_by_name"], name))
            env.tenants[name] = tenant_id
            env.tokens[name] = await add_token(pool, tenant_id, f"{name}-admin", "admin")
        env.tokens["viewer"] = await add_token(pool, env.tenants["alpha"], "watcher", "viewer")
        try:
            yield env
        finally:
            await client.close()


async def record(
    pool: asyncpg.Pool, tenant_id: int | None, body: bytes = b'{"seq": 1}', **extra: Any
) -> int:
    letter = dlq.NewDeadLetter(
        queue=QUEUE,
        reason="failed after 1 attempts: RuntimeError: boom",
        body=body,
        stage="extraction",
        message_type="jira_issues",
        error="RuntimeError: boom",
        traceback='Traceback (most recent call last):\n  File "/srv/etld/x.py"\nRuntimeError: boom',
        attempts=1,
        headers={"x-etld-message-id": "m-1"},
        tenant_id=tenant_id,
        **extra,
    )
    return await dlq.record(pool, letter)


async def dead_ids(pool: asyncpg.Pool, tenant_id: int, count: int) -> list[int]:
    async def enough() -> bool:
        return len(await dlq.list_dead_letters(pool, tenant_id=tenant_id)) == count

    await wait_until(enough, what=f"{count} dead letters of tenant {tenant_id}")
    return sorted(d.id for d in await dlq.list_dead_letters(pool, tenant_id=tenant_id))


def routes(dead_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/app/etl/queues", None),
        ("GET", "/app/etl/dead-letters", None),
        ("GET", f"/app/etl/dead-letters/{dead_id}", None),
        ("POST", f"/app/etl/dead-letters/{dead_id}/requeue", None),
        ("POST", "/app/etl/dead-letters/requeue", {"ids": [dead_id]}),
        ("POST", "/app/etl/dead-letters/purge", {"ids": [dead_id]}),
        ("POST", "/app/etl/workers/restart", {}),
    ]


# -- auth -------------------------------------------------------------------------------------


async def test_routes_refuse_anonymous_and_viewers_may_only_read(
    pool: asyncpg.Pool, db_url: str, aiohttp_client: Any
) -> None:
    # The web app alone, without a broker: refusals come before any handler runs.
    world = await build_world(pool, web_config(db_url))
    client = await aiohttp_client(create_app(world.daemon))
    dead_id = await record(pool, world.tenants["alpha"])
    for method, path, body in routes(dead_id):
        for headers in ({}, {"Authorization": "Bearer etld_nope"}, {"X-Internal-Auth": "x"}):
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status == 401, (method, path, headers)
            assert (await resp.json())["error"]["code"] == "unauthorized"
        if method == "POST":
            resp = await client.request(method, path, json=body, headers=world.auth("viewer"))
            assert resp.status == 403, path
            assert (await resp.json())["error"]["code"] == "forbidden"
    viewer = world.auth("viewer")
    assert (await client.get("/app/etl/dead-letters", headers=viewer)).status == 200
    assert (await client.get(f"/app/etl/dead-letters/{dead_id}", headers=viewer)).status == 200
    # Without RabbitMQ the queue figures are unavailable, said as JSON.
    resp = await client.get("/app/etl/queues", headers=viewer)
    assert resp.status == 503
    assert "RabbitMQ" in (await resp.json())["error"]["message"]
    letter = await dlq.get_dead_letter(pool, dead_id)
    assert letter is not None
    assert letter.status == "dead"


# -- queue health -----------------------------------------------------------------------------


async def test_queue_health_lists_every_queue_with_consumers_and_workers(env: Env) -> None:
    for _ in range(2):
        await env.publisher.publish("transform_queue_free", {"waits": "no consumer"})
    await record(env.pool, env.tenants["alpha"])
    await record(env.pool, env.tenants["alpha"])
    await record(env.pool, env.tenants["beta"])
    await record(env.pool, None)

    resp = await env.client.get("/app/etl/queues", headers=env.auth("viewer"))
    assert resp.status == 200
    data = await resp.json()
    queues = {q["name"]: q for q in data["queues"]}
    assert list(queues) == [spec.name for spec in Topology(env.config).all_queues()]
    assert all(q["exists"] for q in queues.values())
    assert data["source"] == "amqp"
    assert queues[QUEUE]["consumers"] == 1
    assert queues["etl.jobs"]["consumers"] == 1
    assert queues["etl.failed.record"]["consumers"] == 1
    assert queues["etl.failed"]["consumers"] == 0
    waiting = queues["transform_queue_free"]
    assert (waiting["ready"], waiting["consumers"], waiting["depth"]) == (2, 0, 2)
    # No management API configured: unacked messages cannot be counted.
    assert all(q["unacked"] is None for q in queues.values())
    # Dead-letter counts are the caller's own; the rest is global.
    assert queues[QUEUE]["dead_letters"] == 2
    assert data["tenant_id"] == env.tenants["alpha"]
    workers = {(w["stage"], w["tier"]): w for w in data["workers"]}
    assert workers["extraction", "free"]["state"] == "consuming"
    assert workers["extraction", "free"]["handler"] is True
    assert ("transform", "free") not in workers
    assert data["daemon"] == daemon_identity()

    beta = await (await env.client.get("/app/etl/queues", headers=env.auth("beta"))).json()
    assert {q["name"]: q["dead_letters"] for q in beta["queues"]}[QUEUE] == 1
    service = await (await env.client.get("/app/etl/queues", headers=env.auth("service"))).json()
    assert {q["name"]: q["dead_letters"] for q in service["queues"]}[QUEUE] == 4
    assert service["tenant_id"] is None
    resp = await env.client.get(
        f"/app/etl/queues?tenant_id={env.tenants['beta']}", headers=env.auth("alpha")
    )
    assert resp.status == 404


# -- dead letters -----------------------------------------------------------------------------


async def test_dead_letters_are_listed_and_shown_per_tenant(env: Env) -> None:
    alpha, beta = env.tenants["alpha"], env.tenants["beta"]
    text_id = await record(env.pool, alpha, job_id=7, run_id=70)
    binary_id = await record(env.pool, alpha, body=b"\xff\x00raw")
    beta_id = await record(env.pool, beta)
    orphan_id = await record(env.pool, None, body=b"not json")

    resp = await env.client.get("/app/etl/dead-letters", headers=env.auth("viewer"))
    assert resp.status == 200
    data = await resp.json()
    assert data["tenant_id"] == alpha
    assert [d["id"] for d in data["dead_letters"]] == [binary_id, text_id]
    row = data["dead_letters"][1]
    expected = {
        "id", "tenant_id", "job_id", "run_id", "queue", "routing_key", "stage",
        "message_type", "reason", "error", "attempts", "status", "requeue_count",
        "created_at", "requeued_at",
    }  # fmt: skip
    assert set(row) == expected
    assert (row["queue"], row["stage"], row["message_type"]) == (QUEUE, "extraction", "jira_issues")
    assert (row["job_id"], row["run_id"], row["attempts"], row["status"]) == (7, 70, 1, "dead")
    assert row["error"] == "RuntimeError: boom"

    page = await env.client.get("/app/etl/dead-letters?limit=1&offset=1", headers=env.auth("alpha"))
    assert [d["id"] for d in (await page.json())["dead_letters"]] == [text_id]
    other = await env.client.get("/app/etl/dead-letters?queue=etl.jobs", headers=env.auth("alpha"))
    assert (await other.json())["dead_letters"] == []
    for query in ("status=bogus", "limit=0", "offset=-1"):
        resp = await env.client.get(f"/app/etl/dead-letters?{query}", headers=env.auth("alpha"))
        assert resp.status == 400, query
    resp = await env.client.get(
        f"/app/etl/dead-letters?tenant_id={beta}", headers=env.auth("alpha")
    )
    assert resp.status == 404

    service = env.auth("service")
    every = await (await env.client.get("/app/etl/dead-letters", headers=service)).json()
    assert [d["id"] for d in every["dead_letters"]] == [orphan_id, beta_id, binary_id, text_id]
    only_beta = await env.client.get(f"/app/etl/dead-letters?tenant_id={beta}", headers=service)
    assert [d["id"] for d in (await only_beta.json())["dead_letters"]] == [beta_id]

    shown = await (
        await env.client.get(f"/app/etl/dead-letters/{text_id}", headers=env.auth("viewer"))
    ).json()
    assert (shown["body"], shown["body_encoding"]) == ('{"seq": 1}', "utf-8")
    assert shown["headers"] == {"x-etld-message-id": "m-1"}
    assert "traceback" not in shown  # it names server files
    binary = await (
        await env.client.get(f"/app/etl/dead-letters/{binary_id}", headers=env.auth("alpha"))
    ).json()
    assert binary["body_encoding"] == "base64"
    assert base64.b64decode(binary["body"]) == b"\xff\x00raw"
    full = await (
        await env.client.get(f"/app/etl/dead-letters/{orphan_id}", headers=service)
    ).json()
    assert full["traceback"].startswith("Traceback")

    # Another tenant's dead letter, one with no tenant, and none at all look the same.
    for dead_id in (beta_id, orphan_id, 999_999):
        for method, path, body in routes(dead_id)[2:4]:
            resp = await env.client.request(method, path, json=body, headers=env.auth("alpha"))
            assert resp.status == 404, (method, path)
            assert (await resp.json())["error"]["code"] == "not_found"
    letter = await dlq.get_dead_letter(env.pool, beta_id)
    assert letter is not None
    assert letter.status == "dead"


async def test_requeue_puts_messages_back_on_their_queue(env: Env) -> None:
    alpha, beta = env.tenants["alpha"], env.tenants["beta"]
    for n, tenant_id in ((0, alpha), (1, alpha), (2, beta)):
        await env.publisher.publish(QUEUE, extraction(n, tenant_id=tenant_id))
    first, second = await dead_ids(env.pool, alpha, 2)
    [beta_id] = await dead_ids(env.pool, beta, 1)
    env.broken = False

    resp = await env.client.post(
        f"/app/etl/dead-letters/{first}/requeue", headers=env.auth("alpha")
    )
    assert resp.status == 200
    shown = await resp.json()
    assert (shown["id"], shown["status"], shown["requeue_count"]) == (first, "requeued", 1)
    assert shown["requeued_at"] is not None
    await wait_until(lambda: env.handled == [(0, first)], what="the requeued message")
    resp = await env.client.post(
        f"/app/etl/dead-letters/{first}/requeue", headers=env.auth("alpha")
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "conflict"

    # Another tenant's id in a selection is skipped like an unknown one.
    resp = await env.client.post(
        "/app/etl/dead-letters/requeue",
        json={"ids": [second, beta_id, first, 999_999]},
        headers=env.auth("alpha"),
    )
    assert resp.status == 200
    assert await resp.json() == {
        "requeued": [second],
        "skipped": [beta_id, first, 999_999],
        "failed": [],
    }
    await wait_until(lambda: len(env.handled) == 2, what="the second requeued message")
    assert env.handled[1] == (1, second)
    letter = await dlq.get_dead_letter(env.pool, beta_id)
    assert letter is not None
    assert letter.status == "dead"

    # "all" is the caller's tenant only; for the service key, every tenant.
    resp = await env.client.post(
        "/app/etl/dead-letters/requeue", json={"all": True}, headers=env.auth("alpha")
    )
    assert (await resp.json())["requeued"] == []
    resp = await env.client.post(
        "/app/etl/dead-letters/requeue", json={"all": True}, headers=env.auth("service")
    )
    assert (await resp.json())["requeued"] == [beta_id]
    await wait_until(lambda: len(env.handled) == 3, what="beta's requeued message")
    assert env.handled[2] == (2, beta_id)
    counts = await queue_counts(env.daemon.config.rabbitmq.url, QUEUE)
    assert counts[QUEUE] == (0, 1)


INVALID_SELECTIONS: list[dict[str, Any]] = [
    {},
    {"ids": []},
    {"ids": ["1"]},
    {"ids": [True]},
    {"ids": [1], "all": True},
    {"all": False},
    {"all": "yes"},
    {"ids": [1], "queue": QUEUE},
    {"all": True, "queue": 5},
    {"all": True, "tenant": 1},
    {"ids": list(range(1, 1002))},
]


async def test_bulk_actions_validate_their_selection(env: Env) -> None:
    dead_id = await record(env.pool, env.tenants["alpha"])
    for action in ("requeue", "purge"):
        for body in INVALID_SELECTIONS:
            resp = await env.client.post(
                f"/app/etl/dead-letters/{action}", json=body, headers=env.auth("alpha")
            )
            assert resp.status == 422, (action, body)
            assert (await resp.json())["error"]["code"] == "invalid"
        resp = await env.client.post(
            f"/app/etl/dead-letters/{action}", data=b"{nope", headers=env.auth("alpha")
        )
        assert resp.status == 400
    letter = await dlq.get_dead_letter(env.pool, dead_id)
    assert letter is not None
    assert letter.status == "dead"


async def test_purge_is_tenant_scoped(env: Env) -> None:
    alpha, beta = env.tenants["alpha"], env.tenants["beta"]
    a1, a2, a3 = [await record(env.pool, alpha) for _ in range(3)]
    b1 = await record(env.pool, beta)
    purge = "/app/etl/dead-letters/purge"

    resp = await env.client.post(purge, json={"ids": [a1, b1]}, headers=env.auth("alpha"))
    assert resp.status == 200
    assert await resp.json() == {"purged": 1, "ids": [a1], "skipped": [b1]}
    resp = await env.client.post(
        purge, json={"all": True, "queue": "etl.jobs"}, headers=env.auth("alpha")
    )
    assert await resp.json() == {"purged": 0}
    resp = await env.client.post(purge, json={"all": True}, headers=env.auth("alpha"))
    assert await resp.json() == {"purged": 2}
    statuses = {d.id: d.status for d in await dlq.list_dead_letters(env.pool, status=None)}
    assert statuses == {a1: "purged", a2: "purged", a3: "purged", b1: "dead"}

    listing = await env.client.get("/app/etl/dead-letters?status=purged", headers=env.auth("alpha"))
    assert [d["id"] for d in (await listing.json())["dead_letters"]] == [a3, a2, a1]
    resp = await env.client.post(
        f"{purge}?tenant_id={beta}", json={"all": True}, headers=env.auth("service")
    )
    assert await resp.json() == {"purged": 1}
    assert await dlq.list_dead_letters(env.pool) == []


# -- workers ----------------------------------------------------------------------------------


async def test_workers_restart_answers_and_consumers_come_back(env: Env) -> None:
    env.broken = False
    path = "/app/etl/workers/restart"
    resp = await env.client.post(
        path, json={"stage": "extraction", "tier": "free"}, headers=env.auth("service")
    )
    assert resp.status == 200
    data = await resp.json()
    assert (data["stage"], data["tier"], data["ok"]) == ("extraction", "free", True)
    [answer] = data["daemons"]
    assert answer["daemon"] == daemon_identity()
    assert answer["restarted"] == [QUEUE]

    resp = await env.client.post(path, headers=env.auth("alpha"))
    [answer] = (await resp.json())["daemons"]
    assert sorted(answer["restarted"]) == sorted(["etl.jobs", QUEUE, "embedding_queue_free"])

    health = await (await env.client.get("/app/etl/queues", headers=env.auth("alpha"))).json()
    workers = {(w["stage"], w["tier"]): w for w in health["workers"]}
    assert (workers["extraction", "free"]["restarts"], workers["extraction", "free"]["state"]) == (
        2,
        "consuming",
    )
    assert workers["jobs", None]["restarts"] == 1
    assert {q["name"]: q["consumers"] for q in health["queues"]}[QUEUE] == 1
    await env.publisher.publish(QUEUE, extraction(5, tenant_id=env.tenants["alpha"]))
    await wait_until(lambda: env.handled == [(5, None)], what="a message after the restart")

    for bad in ({"stage": "load"}, {"tier": "gold"}, {"timeout": 0}, {"timeout": "1"}, {"x": 1}):
        resp = await env.client.post(path, json=bad, headers=env.auth("alpha"))
        assert resp.status == 422, bad
    resp = await env.client.post(path, data=orjson.dumps([1]), headers=env.auth("alpha"))
    assert resp.status == 400
