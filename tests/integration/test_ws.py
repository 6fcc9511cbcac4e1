"""WebSocket status feeds: delivery latency, tenant isolation, Origin, listener recovery."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from etld.web.app import create_app
from etld.web.events import HUB, StatusHub
from tests.integration.test_api_jobs import World, add_job, build_world, web_config

Client = TestClient[web.Request, web.Application]
DEADLINE = 0.5  # the promise: a status change reaches subscribers within 500 ms of commit


@pytest.fixture
async def world(pool: asyncpg.Pool, db_url: str) -> World:
    config = web_config(db_url, web={"allowed_origins": ["https://etl.example.com"]})
    return await build_world(pool, config)


@pytest.fixture
async def client(world: World, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(world.daemon))


def status(overall: str, extraction: str = "running") -> dict[str, Any]:
    step = {"order": 1, "extraction": extraction, "transform": "idle", "embedding": "idle"}
    return {"overall": overall, "steps": {"web_step": {**step, "display_name": "Web step"}}}


async def commit_status(world: World, tenant: str, new: dict[str, Any]) -> float:
    """Store and announce a job status like a worker does.

    Returns the time just before COMMIT, so measured latencies include the commit.
    """
    pool = world.runs.pool
    tenant_id, job_id = world.tenants[tenant], world.jobs[tenant]
    async with pool.acquire() as conn, conn.transaction():
        await world.runs.set_status(conn, tenant_id, job_id, new)
        return time.perf_counter()


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == WSMsgType.TEXT, msg
    data: dict[str, Any] = orjson.loads(msg.data)
    return data


async def assert_silent(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    try:
        msg = await asyncio.wait_for(ws.receive(), seconds)
    except TimeoutError:
        return
    pytest.fail(f"unexpected message {msg!r}")


def job_path(world: World, tenant: str, stage: str = "extraction", job: str | None = None) -> str:
    return f"/ws/job/{stage}/{world.tenants[tenant]}/{world.jobs[job or tenant]}"


async def test_job_feed_delivers_within_500ms(world: World, client: Client) -> None:
    socks = [
        await client.ws_connect(job_path(world, "alpha", stage), headers=world.auth("alpha"))
        for stage in ("extraction", "transform", "embedding")
    ]
    # Browsers pass the token in the query string instead.
    socks.append(
        await client.ws_connect(f"{job_path(world, 'alpha')}?token={world.tokens['alpha']}")
    )
    for ws in socks:
        first = await receive(ws)
        assert first["type"] == "job_status_update"
        assert first["job_id"] == world.jobs["alpha"]
        assert first["status"]["overall"] == "READY"

    latencies: list[float] = []
    for round_ in range(3):
        new = status("RUNNING", extraction=("running", "finished", "running")[round_])
        committed = await commit_status(world, "alpha", new)
        for ws in socks:
            msg = await receive(ws, timeout=DEADLINE)
            latencies.append(time.perf_counter() - committed)
            assert msg == {
                "type": "job_status_update",
                "tenant_id": world.tenants["alpha"],
                "job_id": world.jobs["alpha"],
                "status": new,
            }
    print(f"status delivery after commit: max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < DEADLINE
    for ws in socks:
        await ws.close()


async def test_tenant_feed_sends_every_job_and_only_its_tenants(
    world: World, client: Client
) -> None:
    pool = world.runs.pool
    second = await add_job(pool, world.tenants["alpha"], "alpha-second", order=2)
    alpha = await client.ws_connect(
        f"/ws/tenant/{world.tenants['alpha']}", headers=world.auth("alpha")
    )
    beta = await client.ws_connect(
        f"/ws/tenant/{world.tenants['beta']}", headers=world.auth("beta")
    )
    assert [(await receive(alpha))["job_id"] for _ in range(2)] == [world.jobs["alpha"], second]
    assert (await receive(beta))["job_id"] == world.jobs["beta"]

    await commit_status(world, "alpha", status("RUNNING"))
    assert (await receive(alpha, timeout=DEADLINE))["status"]["overall"] == "RUNNING"
    await assert_silent(beta, 0.3)

    await commit_status(world, "beta", status("FAILED", "failed"))
    assert (await receive(beta, timeout=DEADLINE))["tenant_id"] == world.tenants["beta"]
    await assert_silent(alpha, 0.3)
    await alpha.close()
    await beta.close()


async def test_handshake_refuses_other_tenants_and_anonymous(world: World, client: Client) -> None:
    beta = world.auth("beta")
    refusals = [
        (job_path(world, "alpha"), beta, 403),  # another tenant's feed
        (f"/ws/tenant/{world.tenants['alpha']}", beta, 403),
        (job_path(world, "beta", job="alpha"), beta, 404),  # alpha's job under beta's id
        (f"/ws/job/extraction/{world.tenants['beta']}/999999", beta, 404),
        (job_path(world, "alpha"), {}, 401),
        (f"{job_path(world, 'alpha')}?token=etld_forged", {}, 401),
        ("/ws/tenant/999999", world.auth("service"), 404),
    ]
    for path, headers, expected in refusals:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(path, headers=headers)
        assert refused.value.status == expected, path
    # A refused client holds no subscription: nothing can reach it.
    assert client.app[HUB].subscriber_count() == 0

    service = await client.ws_connect(job_path(world, "alpha"), headers=world.auth("service"))
    assert (await receive(service))["tenant_id"] == world.tenants["alpha"]
    await service.close()


async def test_origin_must_be_this_site_or_allowed(world: World, client: Client) -> None:
    auth = world.auth("alpha")
    path = job_path(world, "alpha")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(path, headers={**auth, "Origin": "https://evil.example"})
    assert refused.value.status == 403
    own = f"http://{client.host}:{client.port}"
    for origin in (own, "https://etl.example.com"):
        ws = await client.ws_connect(path, headers={**auth, "Origin": origin})
        assert (await receive(ws))["type"] == "job_status_update"
        await ws.close()


async def test_listener_recovers_after_termination(world: World, client: Client) -> None:
    hub = client.app[HUB]
    ws = await client.ws_connect(job_path(world, "alpha"), headers=world.auth("alpha"))
    await receive(ws)
    pid = hub.listener_pid
    assert pid is not None
    async with world.runs.pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    while hub.listening.is_set():  # the hub notices the loss at once
        await asyncio.sleep(0.01)
    # Committed while nobody listens: its NOTIFY is lost, the resync must make up for it.
    missed = status("RUNNING", "finished")
    await commit_status(world, "alpha", missed)
    assert (await receive(ws, timeout=5.0))["status"] == missed
    assert hub.connections == 2
    assert hub.listener_pid not in (None, pid)

    after = status("FINISHED", "finished")
    committed = await commit_status(world, "alpha", after)
    assert (await receive(ws, timeout=DEADLINE))["status"] == after
    assert time.perf_counter() - committed < DEADLINE
    await ws.close()


async def test_slow_client_is_dropped_without_delaying_others(world: World, client: Client) -> None:
    hub = client.app[HUB]
    hub.queue_size = 8
    auth = world.auth("alpha")
    slow = await client.ws_connect(job_path(world, "alpha"), headers=auth)
    fast = await client.ws_connect(job_path(world, "alpha"), headers=auth)
    await receive(slow)
    await receive(fast)
    tenant_id, job_id = world.tenants["alpha"], world.jobs["alpha"]
    count, padding = 300, "x" * 65536  # ~20 MB: more than socket buffers hold for `slow`
    got: list[int] = []

    async def read_fast() -> None:
        while len(got) < count:
            got.append((await receive(fast, timeout=5.0))["status"]["i"])

    reader = asyncio.create_task(read_fast())
    for i in range(count):
        hub.dispatch(tenant_id, job_id, {"overall": "RUNNING", "i": i, "padding": padding})
        await asyncio.sleep(0.002)
    await asyncio.wait_for(reader, 10.0)
    assert got == list(range(count))
    while hub.subscriber_count() > 1:  # the slow client's handler leaves
        await asyncio.sleep(0.05)
    # When it finally reads, the slow client finds its connection closed by the server.
    assert await asyncio.wait_for(_until_closed(slow), 5.0) == aiohttp.WSCloseCode.TRY_AGAIN_LATER
    await fast.close()


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async for _msg in ws:
        pass
    return ws.close_code


def test_hub_overflow_closes_only_the_full_subscription() -> None:
    hub = StatusHub("postgresql://unused", queue_size=3)

    async def scenario() -> None:
        slow = hub.subscribe(1, 7)
        other_job = hub.subscribe(1, 8)
        tenant = hub.subscribe(1)
        foreign = hub.subscribe(2)
        for i in range(5):
            hub.dispatch(1, 7, {"overall": "RUNNING", "i": i})
            if tenant.queue.full():
                tenant.queue.get_nowait()
        assert slow.closed.is_set()
        assert slow.reason == "client too slow"
        assert not tenant.closed.is_set()
        assert other_job.queue.empty()
        assert foreign.queue.empty()
        hub.unsubscribe(slow)
        assert hub.subscriber_count() == 3

    asyncio.run(scenario())
