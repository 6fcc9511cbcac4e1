"""A job run through the real pipeline: 8 consumers, shuffled order, duplicate deliveries.

The run must be FINISHED exactly once, every stage's items done exactly once, records
counted once, and the status JSON must move forward only. A rejected page ends the run
FAILED, naming the page.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from etld.config import Config
from etld.daemon import Daemon
from etld.jobs.control import get_job, start_job
from etld.jobs.runs import Runs
from etld.sources.base import register_source
from tests.support.scripted import ScriptedSource, ScriptedStep, setup_tables

STAGE_ORDER = {"idle": 0, "running": 1, "finished": 2, "failed": 2}


class DuplicatingPublisher:
    """Publishes a seeded share of messages twice: the broker then delivers both."""

    def __init__(self, inner: Any, share: float, seed: int = 7) -> None:
        self.inner = inner
        self.share = share
        self.rng = random.Random(seed)
        self.duplicates = 0

    async def publish(self, queue: str, message: dict[str, Any], **kwargs: Any) -> Any:
        result = await self.inner.publish(queue, message, **kwargs)
        if queue != "etl.jobs" and self.rng.random() < self.share:
            self.duplicates += 1
            await self.inner.publish(queue, message, **kwargs)
        return result


def pipeline_config(make_config: Callable[..., Config], provider: str) -> Config:
    return make_config(
        workers={"free": {"extraction": 8, "transform": 8, "embedding": 0}},
        pipeline={"job_workers": 2},
        tenants=[{"name": "acme", "tier": "free"}, {"name": "other", "tier": "free"}],
        integrations=[{"tenant": "acme", "name": "scripted", "provider": provider}],
        security={"internal_auth_key": "k" * 24},
        scheduler={"enabled": False},
    )


@pytest.fixture
async def daemon_factory() -> AsyncIterator[Callable[[Config], Any]]:
    daemons: list[Daemon] = []

    async def start(config: Config) -> Daemon:
        daemon = Daemon(config, frozenset({"workers", "web"}))
        daemons.append(daemon)
        await daemon.start()
        return daemon

    yield start
    for daemon in daemons:
        await daemon.shutdown()


async def wait_for_outcome(
    pool: asyncpg.Pool, job_id: int, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT * FROM etl_job_runs WHERE job_id = $1", job_id)
        if rows and all(r["outcome"] != "RUNNING" for r in rows):
            assert len(rows) == 1, [dict(r) for r in rows]
            return dict(rows[0])
        await asyncio.sleep(0.05)
    raise AssertionError("run did not end in time")


async def watch_status(
    port: int, tenant_id: int, job_id: int, seen: list[dict[str, Any]], ready: asyncio.Event
) -> None:
    url = f"http://127.0.0.1:{port}/ws/job/extraction/{tenant_id}/{job_id}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"X-Internal-Auth": "k" * 24}) as ws,
    ):
        ready.set()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = msg.json()
            seen.append(event["status"])
            if event["status"]["overall"] in ("FINISHED", "FAILED"):
                return


async def run_job(
    make_config: Callable[..., Config],
    daemon_factory: Callable[[Config], Any],
    provider: str,
    steps: list[ScriptedStep],
    duplicate_share: float = 0.0,
) -> tuple[Daemon, dict[str, Any], dict[str, Any], list[dict[str, Any]], DuplicatingPublisher]:
    register_source(provider, lambda: ScriptedSource(provider, steps))
    config = pipeline_config(make_config, provider)
    daemon = await daemon_factory(config)
    assert daemon.pool is not None
    await setup_tables(daemon.pool)
    runs: Runs = daemon.services["runs"]
    duplicating = DuplicatingPublisher(runs.publisher, duplicate_share)
    runs.publisher = duplicating
    async with daemon.pool.acquire() as conn:
        job_id = await conn.fetchval("SELECT id FROM etl_jobs WHERE name = 'scripted'")
    job = await get_job(daemon.pool, job_id)
    assert job is not None
    seen: list[dict[str, Any]] = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(
        watch_status(daemon.services["web_port"], job["tenant_id"], job_id, seen, ready)
    )
    await asyncio.wait_for(ready.wait(), 10)
    result = await start_job(runs, job, trigger="manual")
    assert result.outcome == "started"
    run = await wait_for_outcome(daemon.pool, job_id)
    await asyncio.wait_for(watcher, 10)
    final = await get_job(daemon.pool, job_id)
    assert final is not None
    return daemon, run, final, seen, duplicating


def assert_monotonic(seen: list[dict[str, Any]]) -> None:
    """Each stage of each step only moves forward: idle → running → finished."""
    last: dict[tuple[str, str], int] = {}
    for status in seen:
        for step, cells in status["steps"].items():
            for stage in ("extraction", "transform", "embedding"):
                rank = STAGE_ORDER[cells[stage]]
                assert rank >= last.get((step, stage), 0), (step, stage, seen)
                last[(step, stage)] = rank


async def test_three_step_job_finishes_exactly_once(
    make_config: Callable[..., Config], daemon_factory: Callable[[Config], Any]
) -> None:
    steps = [
        ScriptedStep("alpha", parts=1, pages=3, items=4),
        ScriptedStep("beta", parts=4, pages=5, items=3),
        ScriptedStep("gamma", parts=2, pages=2, items=7),
    ]
    daemon, run, job, seen, dup = await run_job(
        make_config, daemon_factory, "scripted_ok", steps, duplicate_share=0.3
    )
    assert run["outcome"] == "FINISHED", run["error"]
    assert dup.duplicates > 5  # duplicates really were delivered
    pages = 3 + 4 * 5 + 2 * 2
    items = 3 * 4 + 20 * 3 + 4 * 7
    assert run["records"] == {"extraction": pages, "transform": items, "embedding": 0}
    assert run["api_calls"] == pages
    assert daemon.pool is not None
    async with daemon.pool.acquire() as conn:
        effects = await conn.fetchval("SELECT count(*) FROM scripted_effects")
        calls = await conn.fetchval("SELECT count(*) FROM scripted_calls")
        stages = await conn.fetch("SELECT * FROM etl_run_stages WHERE run_id = $1", run["id"])
        pending = await conn.fetchval(
            "SELECT count(*) FROM etl_run_items WHERE run_id = $1 AND state <> 'done'", run["id"]
        )
    assert effects == pages
    assert calls >= pages
    assert pending == 0
    for row in stages:
        assert row["created"] == row["done"], dict(row)
    assert job["status"]["overall"] == "FINISHED"
    for name, cells in job["status"]["steps"].items():
        assert (cells["extraction"], cells["transform"], cells["embedding"]) == (
            "finished",
            "finished",
            "finished",
        ), name
    assert [job["status"]["steps"][s.name]["order"] for s in steps] == [1, 2, 3]
    assert_monotonic(seen)
    # Every stage of every step was seen running before finishing, in step order.
    firsts = [
        next(
            i
            for i, s in enumerate(seen)
            if s["steps"].get(step.name, {}).get("extraction", "idle") != "idle"
        )
        for step in steps
    ]
    assert firsts == sorted(firsts)
    assert seen[-1]["overall"] == "FINISHED"


async def test_rejected_page_fails_the_run_with_the_reason(
    make_config: Callable[..., Config], daemon_factory: Callable[[Config], Any]
) -> None:
    steps = [
        ScriptedStep("alpha", pages=2),
        ScriptedStep("beta", parts=2, pages=3, fail_page="1-2"),
        ScriptedStep("gamma", pages=2),
    ]
    daemon, run, job, seen, _ = await run_job(make_config, daemon_factory, "scripted_bad", steps)
    assert run["outcome"] == "FAILED"
    assert "page 1-2 of beta is malformed" in run["error"]
    assert run["dead_letters"] == 1
    assert job["status"]["overall"] == "FAILED"
    assert job["status"]["steps"]["beta"]["transform"] == "failed"
    assert job["status"]["steps"]["gamma"]["extraction"] == "idle"  # never started
    assert daemon.pool is not None
    async with daemon.pool.acquire() as conn:
        note = await conn.fetchrow("SELECT * FROM notifications WHERE run_id = $1", run["id"])
    assert note is not None
    assert note["kind"] == "run_failed"
    assert "page 1-2 of beta is malformed" in note["message"]
    assert_monotonic(seen)
