"""What runs next: the reference orchestration's timing, as one function.

After a job ends, the next active job of the tenant (in job order) becomes READY and
runs after `fast_retry_interval`; after the last job the cycle restarts from the first
after `full_cycle_interval`. Used by the run completion path and by the scheduler when
it skips a job, with the same clock, so timing is testable without sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from etld.config import SchedulerConfig
from etld.store.queries import SQL


async def schedule_after(
    conn: asyncpg.Connection,
    tenant_id: int,
    finished_job_id: int,
    now: datetime,
    config: SchedulerConfig,
) -> int | None:
    """Mark the job after `finished_job_id` READY with its next_run; returns its id."""
    jobs = [dict(r) for r in await conn.fetch(SQL["jobs.tenant_jobs_for_scheduling"], tenant_id)]
    active = [j for j in jobs if j["active"]]
    if not active:
        return None
    order = [j["id"] for j in jobs]
    position = order.index(finished_job_id) if finished_job_id in order else -1
    following = [j for j in jobs[position + 1 :] if j["active"]]
    if following:
        target, delay = following[0], config.fast_retry_interval
    else:
        target, delay = active[0], config.full_cycle_interval
    next_run = now + timedelta(seconds=delay)
    if target["id"] == finished_job_id:
        # A tenant's only active job keeps showing how its run ended until it runs again.
        await conn.execute(SQL["jobs.set_next_run"], target["id"], next_run)
    else:
        await conn.execute(SQL["jobs.set_ready"], target["id"], next_run)
    return int(target["id"])
