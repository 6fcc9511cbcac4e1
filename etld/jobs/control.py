"""Starting jobs and the operator's controls: run now, pause/resume, reset status.

`start_job` is the one way a run begins, for the scheduler and for "run now" alike:
a job whose integration is inactive finishes at once with the alert "Integration is
inactive - job skipped"; otherwise a run is claimed (at most one RUNNING per job, one
per scheduled tick) and its job message published to `etl.jobs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from etld.broker.topology import JOBS_QUEUE
from etld.jobs.notify import notify
from etld.jobs.runs import Runs
from etld.jobs.schedule import schedule_after
from etld.jobs.status import fresh_status
from etld.logs import get_logger
from etld.sources.base import InvalidSettings, UnknownProvider, get_source
from etld.store.queries import SQL

log = get_logger(__name__)

INACTIVE_ALERT = "Integration is inactive - job skipped"


class JobConflict(Exception):
    """The action does not fit the job's state (e.g. run now while it runs)."""


@dataclass(frozen=True)
class StartResult:
    run_id: int | None
    outcome: str  # started | skipped | already_running | failed


async def start_job(
    runs: Runs,
    job: dict[str, Any],
    *,
    trigger: str,
    scheduled_for: datetime | None = None,
    full_sync: bool = False,
    config: dict[str, Any] | None = None,
) -> StartResult:
    """Begin a run of `job` (a row of jobs.get); publish its job message after commit."""
    now = runs.clock()
    tenant_id, job_id = job["tenant_id"], job["id"]
    async with runs.pool.acquire() as conn, conn.transaction():
        if not job["integration_active"]:
            return await _skip(conn, runs, job, trigger, scheduled_for or now, now)
        try:
            source = get_source(job["provider"])
            settings = job.get("integration_settings") or {}
            steps = [s.definition() for s in source.run_steps(config or {}, settings)]
        except (UnknownProvider, InvalidSettings) as exc:
            await _failed_start(conn, runs, job, trigger, now, str(exc.args[0]))
            return StartResult(None, "failed")
        run_id = await runs.claim(
            conn,
            tenant_id=tenant_id,
            job_id=job_id,
            steps=steps,
            trigger=trigger,
            full_sync=full_sync,
            scheduled_for=scheduled_for,
            config=config,
        )
        if run_id is None:
            return StartResult(None, "already_running")
        if trigger != "webhook":  # webhook runs come between polls and leave their timing
            await conn.execute(SQL["jobs.clear_next_run"], job_id)
    message = {
        "job_id": job_id,
        "tenant_id": tenant_id,
        "integration_id": job["integration_id"],
        "job_type": job["job_type"],
        "config": {"full_sync": full_sync, **(config or {})},
        "scheduled_at": (scheduled_for or now).isoformat(),
        "priority": 1,
        "retry_count": 0,
        "max_retries": runs.config.rabbitmq.max_retries.get("jobs", 3),
        "run_id": run_id,
    }
    # If this publish is lost, the run sits at step 0 and the watchdog starts it.
    await runs.publisher.publish(JOBS_QUEUE, message)
    log.info("job started", job_id=job_id, run_id=run_id, trigger=trigger)
    return StartResult(run_id, "started")


async def _skip(
    conn: asyncpg.Connection,
    runs: Runs,
    job: dict[str, Any],
    trigger: str,
    scheduled_for: datetime,
    now: datetime,
) -> StartResult:
    run_id = await conn.fetchval(
        SQL["runs.skipped_run"],
        job["tenant_id"],
        job["id"],
        trigger,
        scheduled_for,
        INACTIVE_ALERT,
        now,
    )
    if run_id is None:
        return StartResult(None, "already_running")
    row = await conn.fetchrow(SQL["jobs.set_overall"], job["id"], "FINISHED")
    await runs.announce(conn, job["tenant_id"], job["id"], row["status"])
    await notify(
        conn,
        tenant_id=job["tenant_id"],
        job_id=job["id"],
        run_id=run_id,
        kind="job_skipped",
        severity="warning",
        message=INACTIVE_ALERT,
    )
    await conn.execute(SQL["jobs.clear_next_run"], job["id"])
    await schedule_after(conn, job["tenant_id"], job["id"], now, runs.config.scheduler)
    return StartResult(int(run_id), "skipped")


async def _failed_start(
    conn: asyncpg.Connection,
    runs: Runs,
    job: dict[str, Any],
    trigger: str,
    now: datetime,
    reason: str,
) -> None:
    run_id = await runs.claim(
        conn, tenant_id=job["tenant_id"], job_id=job["id"], steps=[], trigger=trigger
    )
    if run_id is not None:
        await conn.execute(SQL["runs.finish_run"], run_id, "FAILED", reason)
        status = fresh_status([], "FAILED")
        await conn.execute(SQL["runs.set_job_finished"], job["id"], status, False, now)
        await runs.announce(conn, job["tenant_id"], job["id"], status)
        await notify(
            conn,
            tenant_id=job["tenant_id"],
            job_id=job["id"],
            run_id=run_id,
            kind="run_failed",
            severity="error",
            message=reason,
        )
    await conn.execute(SQL["jobs.clear_next_run"], job["id"])


async def get_job(pool: asyncpg.Pool, job_id: int) -> dict[str, Any] | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["jobs.get"], job_id)
    return dict(row) if row is not None else None


async def run_now(runs: Runs, job: dict[str, Any], *, full_sync: bool = False) -> StartResult:
    result = await start_job(runs, job, trigger="manual", full_sync=full_sync)
    if result.outcome == "already_running":
        raise JobConflict(f"job {job['name']} is already running")
    return result


async def set_active(pool: asyncpg.Pool, job_id: int, active: bool) -> None:
    async with pool.acquire() as conn:
        await conn.execute(SQL["jobs.set_active"], job_id, active)


RESETTABLE = ("READY", "NOT_STARTED")


async def reset_status(runs: Runs, job: dict[str, Any], status: str) -> None:
    """The reference's "reset status": end a running run (FAILED, "reset by user"), then set it."""
    if status not in RESETTABLE:
        raise JobConflict(f"status must be one of {', '.join(RESETTABLE)}")
    async with runs.pool.acquire() as conn:
        running = await conn.fetchval(SQL["runs.running_run_of_job"], job["id"])
    if running is not None:
        await runs.fail_run(int(running), "reset by user")
    async with runs.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(SQL["jobs.set_overall"], job["id"], status)
        next_run = runs.clock() if status == "READY" else None
        await conn.execute(SQL["jobs.set_next_run"], job["id"], next_run)
        await runs.announce(conn, job["tenant_id"], job["id"], row["status"])
