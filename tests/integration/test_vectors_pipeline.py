"""The embedding stage inside a running daemon: RabbitMQ, the run ledger, the web API.

A scripted source loads work items and asks for their embedding as a transform does;
the daemon (embeddings on) must embed each once, finish the run, and answer searches.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from etld.config import Config
from etld.daemon import Daemon
from etld.jobs.control import get_job, start_job
from etld.sources.base import RawPage, Source, Step, StepContext, TransformOutput, register_source
from etld.vectors.service import VectorServices
from tests.integration.test_jobs_pipeline import wait_for_outcome
from tests.support.vectors import TARGETS, corpus, model_cache_dir

PROVIDER = "vectors_scripted"
PAGES = 3
PER_PAGE = 20
KEY = "k" * 24


class _LoadItems(Step):
    name = "items"
    display_name = "Items"

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: Any) -> None:
        items = corpus(PAGES * PER_PAGE, "PIPE")
        for page in range(PAGES):
            chunk = items[page * PER_PAGE : (page + 1) * PER_PAGE]
            await out.store_page("items", {"items": chunk}, f"p{page}", item_count=len(chunk))

    async def transform(self, ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
        items = page.payload["items"]
        async with ctx.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO work_items (tenant_id, integration_id, external_id, key, summary, "
                "description) SELECT $1, $2, r.external_id, r.key, r.summary, r.description "
                "FROM jsonb_to_recordset($3::jsonb) AS r (external_id text, key text, "
                "summary text, description text) "
                "ON CONFLICT (tenant_id, integration_id, external_id) DO NOTHING",
                ctx.run.tenant_id,
                ctx.integration.id,
                items,
            )
        out.embed("work_items", [i["external_id"] for i in items], "insert")
        return len(items)


class _Source(Source):
    provider = PROVIDER

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        return [_LoadItems()]


register_source(PROVIDER, _Source)


@pytest.fixture
async def daemon(make_config: Callable[..., Config], tmp_path: Path) -> AsyncIterator[Daemon]:
    config = make_config(
        workers={"free": {"extraction": 1, "transform": 2, "embedding": 1}},
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[{"tenant": "acme", "name": "items", "provider": PROVIDER}],
        security={"internal_auth_key": KEY},
        scheduler={"enabled": False},
        embeddings={"enabled": True, "cache_dir": str(model_cache_dir()), "threads": 2},
        qdrant={"path": str(tmp_path / "qdrant")},
    )
    d = Daemon(config, frozenset({"workers", "web"}))
    await d.start()
    yield d
    await d.shutdown()


async def test_daemon_embeds_loaded_items_and_answers_searches(daemon: Daemon) -> None:
    pool: asyncpg.Pool | None = daemon.pool
    assert pool is not None
    assert isinstance(daemon.services["vectors"], VectorServices)
    async with pool.acquire() as conn:
        job_id = await conn.fetchval("SELECT id FROM etl_jobs WHERE name = 'items'")
    job = await get_job(pool, job_id)
    assert job is not None
    started = time.monotonic()
    result = await start_job(daemon.services["runs"], job, trigger="manual")
    assert result.outcome == "started"
    run = await wait_for_outcome(pool, job_id)
    assert run["outcome"] == "FINISHED", run["error"]
    total = PAGES * PER_PAGE
    assert run["records"]["embedding"] == total
    async with pool.acquire() as conn:
        bridge = await conn.fetchval("SELECT count(*) FROM qdrant_vectors")
        embedding_items = await conn.fetchval(
            "SELECT count(*) FROM etl_run_items WHERE stage = 'embedding' AND state = 'done'"
        )
    assert bridge == total
    assert embedding_items == PAGES * 2  # 20 ids per page: batches of 16 and 4
    assert time.monotonic() - started < 60

    url = f"http://127.0.0.1:{daemon.services['web_port']}/app/etl/search"
    params = {"q": TARGETS[2][2], "tenant_id": str(job["tenant_id"]), "limit": "3"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=params, headers={"X-Internal-Auth": KEY}) as response,
    ):
        body = await response.json()
    assert response.status == 200, body
    assert body["results"][0]["key"] == "PIPE-3"
    # The custom source is named by its integration in the payload's source_type.
    assert body["results"][0]["source_type"] == "items"
