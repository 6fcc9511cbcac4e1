"""Notifications of failed runs: stored per tenant, delivered to a Slack-compatible webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web

from etld.config import NotificationsConfig
from etld.jobs import control
from etld.jobs.notify import deliver_pending
from etld.store.queries import SQL
from etld.web.app import create_app
from tests.integration.test_api_jobs import PROVIDER, World, build_world, web_config

# What an operator put in the integration's settings; it must never leave the daemon.
TOKEN = "jira-api-token-5f2c9d81e4"


@dataclass
class Receiver:
    """A local webhook endpoint answering with the scripted statuses, then 200."""

    statuses: list[int]
    bodies: list[bytes] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.content_types.append(request.content_type)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok" if status < 300 else "broken")


async def failed_run(world: World) -> int:
    """Start a run of alpha's job (whose settings hold a token) and fail it."""
    pool = world.runs.pool
    alpha = world.tenants["alpha"]
    async with pool.acquire() as conn:
        # Same integration as build_world's, now with a token in its settings.
        await conn.fetchval(
            SQL["seed.upsert_integration"],
            alpha, "alpha-job", PROVIDER, None, None, {"api_token": TOKEN}, False, True,
        )  # fmt: skip
    job = await control.get_job(pool, world.jobs["alpha"])
    assert job is not None
    started = await control.run_now(world.runs, job)
    assert started.outcome == "started"
    assert started.run_id is not None
    failed = await world.runs.fail_run(started.run_id, "extraction failed: 401 Unauthorized")
    assert failed
    return started.run_id


async def notification(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM notifications WHERE run_id = $1", run_id)
    assert row is not None
    return row


async def test_failed_run_is_delivered_with_retries_and_listed_for_its_tenant(
    pool: asyncpg.Pool, db_url: str, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    world = await build_world(pool, web_config(db_url))
    run_id = await failed_run(world)
    note = await notification(pool, run_id)
    assert (note["kind"], note["severity"]) == ("run_failed", "error")
    assert (note["job_id"], note["delivery_attempts"], note["delivered_at"]) == (
        world.jobs["alpha"],
        0,
        None,
    )

    receiver = Receiver(statuses=[500])
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    config = NotificationsConfig(webhook_url=str(server.make_url("/hook")), timeout=5.0)

    async with aiohttp.ClientSession() as session:
        # The receiver fails: the attempt is counted, nothing is marked delivered.
        assert await deliver_pending(pool, config, session) == 0
        note = await notification(pool, run_id)
        assert (note["delivery_attempts"], note["delivered_at"]) == (1, None)
        assert "500" in note["delivery_error"]
        assert len(receiver.bodies) == 1

        # A retry waits its backoff (30 s per failed attempt); nothing is sent before that.
        assert await deliver_pending(pool, config, session) == 0
        assert len(receiver.bodies) == 1

        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE notifications SET created_at = created_at - interval '1 minute'"
                " WHERE id = $1",
                note["id"],
            )
        assert await deliver_pending(pool, config, session) == 1
        note = await notification(pool, run_id)
        assert note["delivery_attempts"] == 2
        assert note["delivered_at"] is not None
        assert note["delivery_error"] is None
        assert len(receiver.bodies) == 2

        # Delivered once: later passes leave it alone.
        assert await deliver_pending(pool, config, session) == 0
        assert len(receiver.bodies) == 2

    assert receiver.content_types == ["application/json", "application/json"]
    assert receiver.bodies[0] == receiver.bodies[1]
    payload = orjson.loads(receiver.bodies[0])
    assert payload["text"] == (
        f"[etld] ERROR alpha job alpha-job: run {run_id} failed: "
        "extraction failed: 401 Unauthorized"
    )
    assert (payload["kind"], payload["tenant"], payload["run_id"]) == (
        "run_failed",
        "alpha",
        run_id,
    )
    for body in receiver.bodies:
        assert TOKEN.encode() not in body
        assert b"api_token" not in body

    client = await aiohttp_client(create_app(world.daemon))
    resp = await client.get("/app/etl/notifications", headers=world.auth("alpha"))
    assert resp.status == 200
    [listed] = (await resp.json())["notifications"]
    assert (listed["id"], listed["run_id"], listed["kind"]) == (note["id"], run_id, "run_failed")
    assert listed["job_name"] == "alpha-job"
    assert listed["delivered_at"] is not None
    assert TOKEN not in await resp.text()
    resp = await client.get("/app/etl/notifications", headers=world.auth("beta"))
    assert (await resp.json())["notifications"] == []
    resp = await client.get(
        f"/app/etl/notifications?tenant_id={world.tenants['alpha']}", headers=world.auth("beta")
    )
    assert resp.status == 404


async def test_delivery_gives_up_after_max_attempts(
    pool: asyncpg.Pool, db_url: str, aiohttp_server: Any
) -> None:
    world = await build_world(pool, web_config(db_url))
    run_id = await failed_run(world)
    receiver = Receiver(statuses=[500, 503, 502])
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = await aiohttp_server(app)
    config = NotificationsConfig(
        webhook_url=str(server.make_url("/hook")), timeout=5.0, max_attempts=2
    )
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            assert await deliver_pending(pool, config, session) == 0
            async with pool.acquire() as conn:
                await conn.execute(
                    "UPDATE notifications SET created_at = created_at - interval '10 minutes'"
                )
    note = await notification(pool, run_id)
    assert (note["delivery_attempts"], note["delivered_at"]) == (2, None)
    assert len(receiver.bodies) == 2


async def test_nothing_is_sent_without_a_webhook(pool: asyncpg.Pool, db_url: str) -> None:
    world = await build_world(pool, web_config(db_url))
    run_id = await failed_run(world)
    async with aiohttp.ClientSession() as session:
        assert await deliver_pending(pool, NotificationsConfig(), session) == 0
    note = await notification(pool, run_id)
    assert (note["delivery_attempts"], note["delivered_at"]) == (0, None)
