"""Semantic search over the API and the command line: tenant scoping, errors, store sharing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from etld.cli import main as cli_main
from etld.config import Config
from etld.vectors.service import VectorServices
from etld.web.app import create_app
from tests.integration.test_api_jobs import World, build_world, web_config
from tests.support.vectors import TARGETS, add_integration, add_work_items, corpus, model_cache_dir

QUERY = TARGETS[0][2]  # a paraphrase of alpha's ALPHA-1


def _config(db_url: str, tmp_path: Path, **sections: dict[str, Any]) -> Config:
    return web_config(
        db_url,
        embeddings={"enabled": True, "cache_dir": str(model_cache_dir()), "threads": 2},
        qdrant={"path": str(tmp_path / "qdrant")},
        **sections,
    )


async def _searchable_world(pool: asyncpg.Pool, config: Config) -> tuple[World, VectorServices]:
    world = await build_world(pool, config)
    vectors = VectorServices(config, pool, store_required=True)
    await vectors.start()
    world.daemon.services["vectors"] = vectors
    vectorizer = vectors.vectorizer()
    for name, count in (("alpha", 40), ("beta", 20)):
        tenant_id = world.tenants[name]
        integration_id = await add_integration(pool, tenant_id, f"{name}-jira")
        items = corpus(count, name.upper())
        if name == "beta":
            items = items[len(TARGETS) :]  # beta has none of the target items
        await add_work_items(pool, tenant_id, integration_id, items)
        ids = [i["external_id"] for i in items]
        for start in range(0, len(ids), 16):
            await vectorizer.process(
                tenant_id, integration_id, "work_items", ids[start : start + 16]
            )
    return world, vectors


@pytest.fixture
async def searchable(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path
) -> AsyncIterator[tuple[World, VectorServices]]:
    world, vectors = await _searchable_world(pool, _config(db_url, tmp_path))
    yield world, vectors
    await vectors.close()


@pytest.fixture
async def client(
    searchable: tuple[World, VectorServices], aiohttp_client: AiohttpClient
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(searchable[0].daemon))


async def _get(client: TestClient[Any, Any], who: str, world: World, **params: Any) -> Any:
    response = await client.get("/app/etl/search", params=params, headers=world.auth(who))
    return response.status, await response.json()


async def test_search_answers_for_the_callers_tenant_only(
    client: TestClient[web.Request, web.Application], searchable: tuple[World, VectorServices]
) -> None:
    world = searchable[0]
    status, body = await _get(client, "alpha", world, q=QUERY, limit=3)
    assert status == 200, body
    assert body["tenant_id"] == world.tenants["alpha"]
    assert (body["model"], body["variant"]) == ("all-MiniLM-L6-v2", "fp32")
    top = body["results"][0]
    assert top["key"] == "ALPHA-1"
    assert top["title"] == TARGETS[0][0]
    assert top["source_type"] == "JIRA"
    assert top["type"] == "Bug"
    assert top["url"] == "https://jira.example.test/browse/ALPHA-1"
    assert 0 < top["score"] <= 1
    assert len(body["results"]) == 3

    status, body = await _get(client, "beta", world, q=QUERY, limit=10)
    assert status == 200
    assert body["results"]
    assert all(r["key"].startswith("BETA-") for r in body["results"])
    # Naming another tenant is refused like a tenant that does not exist.
    status, _ = await _get(client, "beta", world, q=QUERY, tenant_id=world.tenants["alpha"])
    assert status == 404
    # The service principal names the tenant.
    status, body = await _get(client, "service", world, q=QUERY, tenant_id=world.tenants["alpha"])
    assert status == 200
    assert body["results"][0]["key"] == "ALPHA-1"
    status, body = await _get(client, "alpha", world, q=QUERY, source_type="jira")
    assert body["source_type"] == "JIRA"
    assert body["results"]
    status, body = await _get(client, "alpha", world, q=QUERY, source_type="GITHUB")
    assert (status, body["results"]) == (200, [])


async def test_search_request_errors(
    client: TestClient[web.Request, web.Application], searchable: tuple[World, VectorServices]
) -> None:
    world = searchable[0]
    assert (await _get(client, "alpha", world))[0] == 400
    assert (await _get(client, "alpha", world, q="  "))[0] == 400
    assert (await _get(client, "alpha", world, q="x", limit=0))[0] == 400
    assert (await _get(client, "alpha", world, q="x", limit="many"))[0] == 400
    assert (await _get(client, "service", world, q="x"))[0] == 400  # which tenant?
    assert (await client.get("/app/etl/search", params={"q": "x"})).status == 401
    viewer = await _get(client, "viewer", world, q=QUERY)
    assert viewer[0] == 200  # reading is enough


async def test_search_unavailable_answers_503(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, aiohttp_client: Any
) -> None:
    world = await build_world(pool, web_config(db_url))
    client = await aiohttp_client(create_app(world.daemon))
    status, body = await _get(client, "alpha", world, q="x")
    assert status == 503
    assert "embeddings.enabled" in body["error"]["message"]
    busy = VectorServices(_config(db_url, tmp_path), pool, store_required=False)
    busy.problem = "the embedded vector store is open in another etld process"
    world.daemon.services["vectors"] = busy
    status, body = await _get(client, "alpha", world, q="x")
    assert status == 503
    assert "another etld process" in body["error"]["message"]


async def test_cli_search_prints_one_hit_per_line(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(db_url, tmp_path)
    _, vectors = await _searchable_world(pool, config)
    await vectors.close()  # the store is free: the command opens it itself
    path = tmp_path / "etld.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n[logging]\nlevel = "warning"\n'
        f'[embeddings]\ncache_dir = "{model_cache_dir()}"\n'
        f'[qdrant]\npath = "{tmp_path / "qdrant"}"\n'
    )

    def etld(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # drop the log lines of the setup
        code = cli_main(["--config", str(path), *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, _ = await asyncio.to_thread(
        etld, "search", "--tenant", "alpha", "--limit", "3", QUERY
    )
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3
    key, score, title = lines[0].split("\t")
    assert (key, title) == ("ALPHA-1", TARGETS[0][0])
    assert 0 < float(score) <= 1
    code, out, _ = await asyncio.to_thread(etld, "search", "--tenant", "beta", QUERY)
    assert code == 0
    assert "ALPHA-" not in out
    code, _, err = await asyncio.to_thread(etld, "search", QUERY)  # two tenants: which one?
    assert code == 2
    assert "--tenant" in err
    code, _, err = await asyncio.to_thread(etld, "search", "--tenant", "nobody", QUERY)
    assert code == 2


async def test_cli_search_asks_the_daemon_that_holds_the_store(
    pool: asyncpg.Pool, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world, vectors = await _searchable_world(pool, _config(db_url, tmp_path))
    server = TestServer(create_app(world.daemon), host="127.0.0.1")
    await server.start_server()
    try:
        path = tmp_path / "etld.toml"
        path.write_text(
            f'[database]\nurl = "{db_url}"\n[logging]\nlevel = "warning"\n'
            f'[embeddings]\ncache_dir = "{model_cache_dir()}"\n'
            f'[qdrant]\npath = "{tmp_path / "qdrant"}"\n'
            f'[web]\nhost = "127.0.0.1"\nport = {server.port}\n'
            f'[security]\ninternal_auth_key = "internal-test-key"\n'
        )
        capsys.readouterr()
        code = await asyncio.to_thread(
            cli_main, ["--config", str(path), "search", "--tenant", "alpha", "--limit", "2", QUERY]
        )
        out = capsys.readouterr().out
        assert code == 0
        assert out.splitlines()[0].startswith("ALPHA-1\t")
    finally:
        await server.close()
        await vectors.close()
