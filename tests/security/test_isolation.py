"""Tenant isolation: every API route of the OpenAPI document and every WebSocket channel,
called with tenant alpha's token and tenant beta's ids, leaks nothing of beta.

Beta owns a job, an integration with a stored credential, a work item, a dead letter and
a notification, each carrying a marker string. Every operation of every path is called
with alpha's admin token, beta's ids in the path, and `tenant_id=<beta>` in the query and
the body. An answer must be a refusal (401/403/404/405/400/422) or, when the route is
tenant-wide (alpha's own list), must not contain a single beta marker.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from etld import dlq
from etld.secrets import encrypt_secret
from etld.web.app import create_app
from tests.integration.test_api_jobs import World, build_world, web_config

SECRET_KEY = "isolation-secret-key-0123456789"
MARK = "BETA-PRIVATE-7d1c"
BETA_TOKEN = "beta-jira-token-93f0c2aa"
REFUSED = {400, 401, 403, 404, 405, 422}

Client = TestClient[web.Request, web.Application]


async def beta_rows(pool: asyncpg.Pool, world: World) -> dict[str, int]:
    beta = world.tenants["beta"]
    async with pool.acquire() as conn:
        integration_id = await conn.fetchval(
            "SELECT integration_id FROM etl_jobs WHERE id = $1", world.jobs["beta"]
        )
        await conn.execute(
            "UPDATE integrations SET base_url = $2, credentials = $3, credentials_hint = '…c2aa' "
            "WHERE id = $1",
            integration_id,
            f"https://{MARK.lower()}.example.com",
            encrypt_secret(SECRET_KEY, beta, integration_id, BETA_TOKEN),
        )
        await conn.execute(
            "UPDATE etl_jobs SET status = jsonb_build_object('overall', 'READY', 'mark', $2::text) "
            "WHERE id = $1",
            world.jobs["beta"],
            MARK,
        )
        item_id = await conn.fetchval(
            "INSERT INTO work_items (tenant_id, integration_id, external_id, key, summary) "
            "VALUES ($1, $2, '10001', 'BETA-1', $3) RETURNING id",
            beta,
            integration_id,
            MARK,
        )
        await conn.execute(
            "INSERT INTO notifications (tenant_id, job_id, kind, severity, message) "
            "VALUES ($1, $2, 'run_failed', 'error', $3)",
            beta,
            world.jobs["beta"],
            MARK,
        )
    letter = dlq.NewDeadLetter(
        queue="extraction_queue_free",
        reason=f"rejected: {MARK}",
        body=f'{{"tenant_id": {beta}, "note": "{MARK}"}}'.encode(),
        stage="extraction",
        tenant_id=beta,
        job_id=world.jobs["beta"],
    )
    dead_id = await dlq.record(pool, letter)
    return {
        "job_id": world.jobs["beta"],
        "integration_id": integration_id,
        "item_id": item_id,
        "dead_id": dead_id,
        "tenant_id": beta,
    }


@pytest.fixture
async def world(pool: asyncpg.Pool, db_url: str) -> World:
    config = web_config(db_url, security={"secret_key": SECRET_KEY})
    return await build_world(pool, config)


@pytest.fixture
async def client(world: World, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(world.daemon))


def _fill(path: str, ids: dict[str, int]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(ids.get(name, ids["job_id"]))

    return re.sub(r"\{(\w+)\}", sub, path)


async def test_no_api_route_leaks_another_tenants_data(
    world: World, client: Client, pool: asyncpg.Pool
) -> None:
    ids = await beta_rows(pool, world)
    alpha = world.auth("alpha")
    resp = await client.get("/app/etl/openapi.json", headers=alpha)
    assert resp.status == 200
    paths: dict[str, dict[str, Any]] = (await resp.json())["paths"]
    assert len(paths) >= 20
    beta_tenant = ids["tenant_id"]
    body = {
        "tenant_id": beta_tenant,
        "ids": [ids["dead_id"]],
        "id": ids["dead_id"],
        "job_id": ids["job_id"],
        "integration_id": ids["integration_id"],
    }
    calls = 0
    for template, operations in paths.items():
        path = _fill(template, ids)
        for method in operations:
            for query in ("", f"?tenant_id={beta_tenant}"):
                kwargs: dict[str, Any] = {"headers": alpha}
                if method in ("post", "put", "patch"):
                    kwargs["json"] = body
                resp = await client.request(method.upper(), path + query, **kwargs)
                text = await resp.text()
                calls += 1
                where = f"{method.upper()} {path}{query} -> {resp.status}"
                assert MARK not in text, where
                assert MARK.lower() not in text, where
                assert BETA_TOKEN not in text, where
                if "{" in template:
                    assert resp.status in REFUSED, where
    assert calls >= 2 * 25

    # The markers are visible to beta itself: the checks above could have seen them.
    beta = world.auth("beta")
    for path in (
        f"/app/etl/work-items/{ids['item_id']}",
        f"/app/etl/dead-letters/{ids['dead_id']}",
        f"/app/etl/integrations/{ids['integration_id']}",
        "/app/etl/notifications",
    ):
        resp = await client.get(path, headers=beta)
        assert resp.status == 200, path
        text = await resp.text()
        assert MARK in text or MARK.lower() in text, path
        assert BETA_TOKEN not in text, path  # never even to its owner

    # Beta's rows are untouched by all of that.
    async with pool.acquire() as conn:
        letter = await conn.fetchrow(
            "SELECT status FROM dead_letters WHERE id = $1", ids["dead_id"]
        )
        job = await conn.fetchrow("SELECT active FROM etl_jobs WHERE id = $1", ids["job_id"])
    assert letter["status"] == "dead"
    assert job["active"] is True


async def test_no_websocket_channel_opens_on_another_tenant(
    world: World, client: Client, pool: asyncpg.Pool
) -> None:
    ids = await beta_rows(pool, world)
    alpha = world.auth("alpha")
    beta_tenant, alpha_tenant = ids["tenant_id"], world.tenants["alpha"]
    channels = [
        f"/ws/tenant/{beta_tenant}",
        *(
            f"/ws/job/{stage}/{beta_tenant}/{ids['job_id']}"
            for stage in ("extraction", "transform", "embedding")
        ),
        # Beta's job under alpha's tenant id, and alpha's token with beta's id in the query.
        f"/ws/job/extraction/{alpha_tenant}/{ids['job_id']}",
        f"/ws/tenant/{beta_tenant}?tenant_id={beta_tenant}",
    ]
    for path in channels:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(path, headers=alpha)
        assert refused.value.status in (403, 404), path
