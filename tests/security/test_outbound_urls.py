"""The outbound URL policy, end to end: every hostile URL of the unit list (and a few more)
is refused when an integration is created through the API, and nothing is stored."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from etld.sources.urlpolicy import UrlPolicy, UrlPolicyError
from etld.web.app import create_app
from tests.integration.test_api_jobs import World, build_world, web_config
from tests.unit.test_urlpolicy import HOSTILE

MORE_HOSTILE = [
    "https://[::ffff:169.254.169.254]/latest/meta-data/",
    "https://0/",
    "https://0x0a.0x00.0x00.0x01",
    "javascript:alert(1)",
    "data:text/plain,hi",
    "https://user@127.0.0.1",
    "https://[fc00::1]",
]

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def world(pool: asyncpg.Pool, db_url: str) -> World:
    return await build_world(pool, web_config(db_url, security={"secret_key": "k" * 32}))


@pytest.fixture
async def client(world: World, aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(world.daemon))


def test_more_hostile_urls_are_refused_by_the_policy() -> None:
    refused = 0
    for url in MORE_HOSTILE:
        with pytest.raises(UrlPolicyError):
            UrlPolicy().check_url(url)
        refused += 1
    assert refused + len(HOSTILE) >= 15


async def test_the_api_refuses_hostile_base_urls(
    world: World, client: Client, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM integrations")
    urls = [u for u in HOSTILE if u != "https://"] + MORE_HOSTILE
    for index, url in enumerate(urls):
        resp = await client.post(
            "/app/etl/integrations",
            json={"name": f"evil{index}", "provider": "jira", "base_url": url, "token": "t"},
            headers=world.auth("alpha"),
        )
        assert resp.status in (400, 422), (url, resp.status, await resp.text())
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM integrations") == before
    assert len(urls) >= 15
