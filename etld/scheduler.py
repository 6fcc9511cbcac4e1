"""The scheduler: per tenant, active jobs in order, one at a time; plus the watchdog.

Only one scheduler acts among all daemons: the holder of a PostgreSQL advisory lock
on a dedicated connection. If that daemon dies, its connection closes, the lock is
released, and another daemon's scheduler takes it on its next tick. Ticks are
idempotent: a run is claimed with a unique (job, scheduled time) row, so a tick
repeated by a new leader never starts a job twice.

Each tick, for every active tenant with no job running, the due job (READY without a
time, or any job whose `next_run` has passed) starts. Timing after a run ends lives in
`etld.jobs.schedule`. The watchdog then looks for RUNNING runs without progress for
`scheduler.stuck_after` seconds: it records a notification and either repairs and
re-queues the run's pending work (`requeue`, at most three times) or fails it. Items
recorded but never published (a crash between commit and publish) are republished.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from etld.component import Component
from etld.config import Config
from etld.errors import StartupError
from etld.jobs.control import start_job
from etld.jobs.notify import notify
from etld.jobs.runs import Clock, Runs, utcnow
from etld.logs import get_logger
from etld.store.pool import connect
from etld.store.queries import SQL

log = get_logger(__name__)

# A fixed key ("etld.sch") shared by every daemon on the same database.
SCHEDULER_LOCK_KEY = 0x65746C642E736368 - (1 << 63)
MAX_WATCHDOG_REQUEUES = 3
UNPUBLISHED_GRACE = timedelta(seconds=30)


@dataclass
class TickReport:
    leader: bool
    started: list[int] = field(default_factory=list)  # job ids
    skipped: list[int] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)  # run ids
    republished: int = 0


class Scheduler(Component):
    name = "scheduler"

    def __init__(self, runs: Runs, config: Config, db_url: str, clock: Clock = utcnow) -> None:
        self.runs = runs
        self.config = config
        self.db_url = db_url
        self.clock = clock
        self._lock_conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self._lock_conn is not None and not self._lock_conn.is_closed()

    # -- component phases ---------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop_taking_work(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self.release()

    async def _loop(self) -> None:
        interval = self.config.scheduler.tick_interval
        while not self._stopping.is_set():
            try:
                await self.tick()
            except (
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                OSError,
                ConnectionError,
                StartupError,
            ) as exc:
                # A lost database or broker must not kill the daemon; the next tick retries.
                # (Reconnecting for the lock raises StartupError while PostgreSQL is away.)
                log.warning("scheduler tick failed", error=repr(exc))
                await self.release()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    # -- leadership ------------------------------------------------------------------------

    async def acquire(self) -> bool:
        """Hold the scheduler lock (idempotent); False when another daemon holds it."""
        if self.is_leader:
            assert self._lock_conn is not None
            try:
                await self._lock_conn.fetchval("SELECT 1")
                return True
            except (asyncpg.PostgresError, OSError, ConnectionError):
                await self.release()
        conn = await connect(self.db_url, self.config.daemon.connect_timeout)
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", SCHEDULER_LOCK_KEY)
        if not got:
            await conn.close()
            return False
        self._lock_conn = conn
        log.info("scheduler leadership acquired")
        return True

    async def release(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close()

    # -- one tick ------------------------------------------------------------------------------

    async def tick(self) -> TickReport:
        if not self.config.scheduler.enabled or not await self.acquire():
            return TickReport(leader=False)
        report = TickReport(leader=True)
        now = self.clock()
        async with self.runs.pool.acquire() as conn:
            tenants = await conn.fetch(SQL["jobs.active_tenants"])
        for tenant in tenants:
            await self._tick_tenant(tenant["id"], now, report)
        await self._watchdog(now, report)
        report.republished = await self.runs.sweep_unpublished(now - UNPUBLISHED_GRACE)
        return report

    async def _tick_tenant(self, tenant_id: int, now: datetime, report: TickReport) -> None:
        async with self.runs.pool.acquire() as conn:
            jobs = [
                dict(r) for r in await conn.fetch(SQL["jobs.tenant_jobs_for_scheduling"], tenant_id)
            ]
        if any(j["overall"] == "RUNNING" for j in jobs):
            return  # one job at a time per tenant; the watchdog looks after stuck ones
        due = [j for j in jobs if j["active"] and _is_due(j, now)]
        if not due:
            return
        # Earliest scheduled first; READY jobs without a time are due immediately.
        due.sort(
            key=lambda j: (
                j["next_run"] or datetime.min.replace(tzinfo=now.tzinfo),
                j["job_order"],
                j["id"],
            )
        )
        chosen = due[0]
        async with self.runs.pool.acquire() as conn:
            job = await conn.fetchrow(SQL["jobs.get"], chosen["id"])
        if job is None:
            return
        result = await start_job(
            self.runs, dict(job), trigger="schedule", scheduled_for=chosen["next_run"] or now
        )
        if result.outcome == "started":
            report.started.append(chosen["id"])
        elif result.outcome == "skipped":
            report.skipped.append(chosen["id"])

    async def _watchdog(self, now: datetime, report: TickReport) -> None:
        limit = now - timedelta(seconds=self.config.scheduler.stuck_after)
        async with self.runs.pool.acquire() as conn:
            stale = [dict(r) for r in await conn.fetch(SQL["runs.stale_runs"], limit)]
        for run in stale:
            report.stuck.append(run["id"])
            idle = (now - (run["last_progress_at"] or now)).total_seconds()
            requeue = (
                self.config.scheduler.watchdog_action == "requeue"
                and run["watchdog_requeues"] < MAX_WATCHDOG_REQUEUES
            )
            async with self.runs.pool.acquire() as conn, conn.transaction():
                action = "requeued" if requeue else "failed"
                await notify(
                    conn,
                    tenant_id=run["tenant_id"],
                    job_id=run["job_id"],
                    run_id=run["id"],
                    kind="run_stuck",
                    severity="warning" if requeue else "error",
                    message=f"run {run['id']} made no progress for {int(idle)} s; {action}",
                    details={"idle_seconds": int(idle), "action": action},
                )
                if requeue:
                    await conn.execute(SQL["runs.watchdog_touch"], run["id"], now)
            if requeue:
                await self.runs.reevaluate(run["id"])
                republished = await self.runs.republish_pending(run["id"])
                log.warning("stuck run requeued", run_id=run["id"], republished=republished)
            else:
                await self.runs.fail_run(run["id"], f"stuck: no progress for {int(idle)} s")


def _is_due(job: dict[str, Any], now: datetime) -> bool:
    if job["overall"] == "READY" and job["next_run"] is None:
        return True
    return (
        job["next_run"] is not None and job["next_run"] <= now and job["overall"] != "NOT_STARTED"
    )
