"""Scheduler timing with an injectable clock, leadership between daemons, the watchdog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from etld.config import Config, parse_config
from etld.jobs.runs import Runs
from etld.scheduler import Scheduler
from etld.seed import seed_from_config
from etld.sources.base import register_source
from tests.support.scripted import RecordingPublisher, ScriptedSource, ScriptedStep

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def config(db_url: str) -> Config:
    register_source("nosteps", lambda: ScriptedSource("nosteps", []))
    register_source("onestep", lambda: ScriptedSource("onestep", [ScriptedStep("only")]))
    return parse_config(
        {
            "database": {"url": db_url},
            "scheduler": {
                "fast_retry_interval": 900,
                "full_cycle_interval": 3600,
                "stuck_after": 600,
            },
            "tenants": [{"name": "acme", "tier": "free"}],
            "integrations": [
                {"tenant": "acme", "name": "a", "provider": "nosteps"},
                {"tenant": "acme", "name": "b", "provider": "nosteps"},
                {"tenant": "acme", "name": "c", "provider": "nosteps"},
                {"tenant": "acme", "name": "d", "provider": "nosteps"},
            ],
        }
    )


async def jobs(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM etl_jobs ORDER BY job_order")
    return {r["name"]: dict(r) for r in rows}


async def running_run(pool: asyncpg.Pool, job_id: int) -> int:
    async with pool.acquire() as conn:
        run_id = await conn.fetchval(
            "SELECT id FROM etl_job_runs WHERE job_id = $1 AND outcome = 'RUNNING'", job_id
        )
    assert run_id is not None
    return int(run_id)


async def make(pool: asyncpg.Pool, config: Config, clock: Clock) -> tuple[Scheduler, Runs]:
    await seed_from_config(pool, config)
    runs = Runs(pool, RecordingPublisher(), config, clock=clock)
    return Scheduler(runs, config, config.database.url, clock=clock), runs


async def test_fast_retry_then_full_cycle_skipping_inactive(
    pool: asyncpg.Pool, config: Config
) -> None:
    clock = Clock(T0)
    scheduler, runs = await make(pool, config, clock)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE etl_jobs SET active = false WHERE name = 'c'")
        await conn.execute(
            "UPDATE etl_jobs SET status = $1, next_run = NULL WHERE name IN ('b', 'd')",
            {"overall": "NOT_STARTED", "steps": {}},
        )
    j = await jobs(pool)
    try:
        report = await scheduler.tick()
        assert report.leader
        assert report.started == [j["a"]["id"]]
        assert (await scheduler.tick()).started == []  # one job at a time per tenant
        await runs.start(await running_run(pool, j["a"]["id"]))  # no steps: finishes at once
        j = await jobs(pool)
        assert j["a"]["status"]["overall"] == "FINISHED"
        assert j["b"]["status"]["overall"] == "READY"
        assert j["b"]["next_run"] == T0 + timedelta(minutes=15)

        clock.advance(minutes=14, seconds=59)
        assert (await scheduler.tick()).started == []
        clock.advance(seconds=1)
        assert (await scheduler.tick()).started == [j["b"]["id"]]
        await runs.start(await running_run(pool, j["b"]["id"]))
        j = await jobs(pool)
        # c is paused, so d is next after the fast interval
        assert j["d"]["status"]["overall"] == "READY"
        assert j["d"]["next_run"] == clock.now + timedelta(minutes=15)
        clock.advance(minutes=15)
        assert (await scheduler.tick()).started == [j["d"]["id"]]
        await runs.start(await running_run(pool, j["d"]["id"]))
        j = await jobs(pool)
        # d was the last active job: the cycle restarts at a after the full interval
        assert j["a"]["status"]["overall"] == "READY"
        assert j["a"]["next_run"] == clock.now + timedelta(hours=1)
        clock.advance(minutes=59)
        assert (await scheduler.tick()).started == []
        clock.advance(minutes=1)
        assert (await scheduler.tick()).started == [j["a"]["id"]]
        assert j["c"]["next_run"] is None  # the inactive job was never scheduled
    finally:
        await scheduler.release()


async def test_inactive_integration_finishes_with_alert(pool: asyncpg.Pool, config: Config) -> None:
    clock = Clock(T0)
    scheduler, _ = await make(pool, config, clock)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE integrations SET active = false WHERE name = 'a'")
    j = await jobs(pool)
    try:
        report = await scheduler.tick()
        assert report.skipped == [j["a"]["id"]]
        async with pool.acquire() as conn:
            run = await conn.fetchrow("SELECT * FROM etl_job_runs WHERE job_id = $1", j["a"]["id"])
            note = await conn.fetchrow(
                "SELECT * FROM notifications WHERE job_id = $1", j["a"]["id"]
            )
        assert run["outcome"] == "SKIPPED"
        assert run["alert"] == "Integration is inactive - job skipped"
        assert note["kind"] == "job_skipped"
        assert note["message"] == run["alert"]
        j = await jobs(pool)
        assert j["a"]["status"]["overall"] == "FINISHED"
        assert j["b"]["next_run"] == T0 + timedelta(minutes=15)
    finally:
        await scheduler.release()


async def test_only_one_scheduler_acts_and_another_takes_over(
    pool: asyncpg.Pool, config: Config
) -> None:
    clock = Clock(T0)
    first, runs = await make(pool, config, clock)
    second = Scheduler(runs, config, config.database.url, clock=clock)
    try:
        assert (await first.tick()).leader
        report = await second.tick()
        assert not report.leader
        assert report.started == []
        assert first._lock_conn is not None
        # The leader's process dies: its connection goes away and so does its lock.
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend($1)", first._lock_conn.get_server_pid())
        taken = await second.tick()
        assert taken.leader
        assert not (await first.tick()).leader  # the old leader notices and stands back
    finally:
        await first.release()
        await second.release()


async def test_repeated_tick_never_starts_a_job_twice(pool: asyncpg.Pool, config: Config) -> None:
    clock = Clock(T0)
    scheduler, _ = await make(pool, config, clock)
    j = await jobs(pool)
    try:
        await scheduler.tick()
        async with pool.acquire() as conn:
            # A new leader repeating the same tick after the old one crashed mid-way
            await conn.execute(
                "UPDATE etl_jobs SET status = jsonb_set(status, '{overall}', '\"READY\"') "
                "WHERE id = $1",
                j["a"]["id"],
            )
            count = await conn.fetchval(
                "SELECT count(*) FROM etl_job_runs WHERE job_id = $1", j["a"]["id"]
            )
        await scheduler.tick()
        async with pool.acquire() as conn:
            again = await conn.fetchval(
                "SELECT count(*) FROM etl_job_runs WHERE job_id = $1", j["a"]["id"]
            )
        assert count == 1
        assert again == 1
    finally:
        await scheduler.release()


async def test_watchdog_requeues_then_fails_a_stuck_run(pool: asyncpg.Pool, config: Config) -> None:
    clock = Clock(T0)
    scheduler, runs = await make(pool, config, clock)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE integrations SET provider = 'onestep' WHERE name = 'a'")
    publisher = runs.publisher
    assert isinstance(publisher, RecordingPublisher)
    j = await jobs(pool)
    try:
        await scheduler.tick()
        run_id = await running_run(pool, j["a"]["id"])
        await runs.start(run_id)  # step 1's extraction item is published, then nobody works it
        published = len(publisher.published)
        for attempt in range(1, 4):
            clock.advance(minutes=11)
            report = await scheduler.tick()
            assert report.stuck == [run_id]
            assert len(publisher.published) == published + attempt  # pending item republished
        clock.advance(minutes=11)
        assert (await scheduler.tick()).stuck == [run_id]
        async with pool.acquire() as conn:
            run = await conn.fetchrow("SELECT * FROM etl_job_runs WHERE id = $1", run_id)
            kinds = await conn.fetch(
                "SELECT kind FROM notifications WHERE run_id = $1 ORDER BY id", run_id
            )
        assert run["outcome"] == "FAILED"
        assert run["error"].startswith("stuck: no progress for")
        assert [k["kind"] for k in kinds].count("run_stuck") == 4
        j = await jobs(pool)
        assert j["a"]["status"]["overall"] == "FAILED"
    finally:
        await scheduler.release()
