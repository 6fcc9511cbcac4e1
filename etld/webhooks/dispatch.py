"""Pending webhook targets into targeted runs: one run per integration per burst.

A delivery only records its targets (`webhook_targets`, one pending row per item). The
dispatcher, running beside the web server, looks every `interval` seconds (and at once when
a delivery arrives) for integrations whose targets are due: no event for `webhook_window`
seconds (setting, default 5), or the oldest waiting six windows (at most a minute), so a
steady stream of events still gets runs. It then locks that integration's pending targets,
starts one run of the integration's job with trigger "webhook" and `{"targets": [...]}`,
and marks the targets taken by that run. A second dispatcher (another web process) skips
locked rows, and a job allows one running run, so a burst makes one extraction.

Targets wait while the job is already running (a poll, or the previous webhook run), and
while the provider's source cannot run targeted extractions (`Source.supports_targets`).
They are dropped, with the reason logged, when the job is paused or NOT_STARTED or the
integration is inactive: polling, the source of truth, is off there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

import asyncpg

from etld.jobs.control import start_job
from etld.jobs.runs import Runs
from etld.logs import get_logger
from etld.sources.base import UnknownProvider, get_source
from etld.store.queries import SQL

log = get_logger(__name__)

DEFAULT_WINDOW = 5.0
MAX_WINDOW = 300.0
MAX_WAIT = 60.0
TARGETS_PER_RUN = 500
PRUNE_EVERY = 600.0


def window_of(settings: Mapping[str, Any]) -> float:
    """The integration's quiet period before its pending targets run."""
    value = settings.get("webhook_window", DEFAULT_WINDOW)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return DEFAULT_WINDOW
    return min(float(value), MAX_WINDOW)


def targeted(provider: str) -> bool:
    try:
        return get_source(provider).supports_targets()
    except UnknownProvider:
        return False


class WebhookDispatcher:
    def __init__(self, pool: asyncpg.Pool, runs: Runs, *, interval: float = 0.5) -> None:
        self.pool = pool
        self.runs = runs
        self.interval = interval
        self._wake = asyncio.Event()
        self._pruned = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Dispatch until cancelled; a failing pass is logged and the next one tries again."""
        while True:
            try:
                await self.dispatch_due()
                await self._prune()
            except (asyncpg.PostgresError, OSError, ConnectionError) as exc:
                log.warning("webhook dispatch failed", error=repr(exc))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def dispatch_due(self) -> list[int]:
        """Start the runs that are due; returns their ids."""
        async with self.pool.acquire() as conn:
            groups = await conn.fetch(SQL["webhooks.pending_groups"])
        started: list[int] = []
        for group in groups:
            window = window_of(group["settings"] or {})
            due = group["quiet_seconds"] >= window or group["waiting_seconds"] >= min(
                MAX_WAIT, max(window, 6 * window)
            )
            if not due or not targeted(group["provider"]):
                continue
            run_id = await self.dispatch(group["integration_id"])
            if run_id is not None:
                started.append(run_id)
        return started

    async def dispatch(self, integration_id: int) -> int | None:
        """One targeted run for the integration's pending targets, if its job can run."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(SQL["webhooks.claim_targets"], integration_id, TARGETS_PER_RUN)
            if not rows:
                return None
            ids = [r["id"] for r in rows]
            job_id = await conn.fetchval(SQL["webhooks.job_of_integration"], integration_id)
            job = await conn.fetchrow(SQL["jobs.get"], job_id) if job_id is not None else None
            overall = (job["status"] or {}).get("overall") if job is not None else None
            if job is None or not (job["active"] and job["integration_active"]):
                reason = "no active job" if job is None else "job or integration paused"
                await self._drop(conn, ids, integration_id, reason)
                return None
            if overall == "NOT_STARTED":
                await self._drop(conn, ids, integration_id, "job is NOT_STARTED")
                return None
            if overall == "RUNNING":
                return None  # waits for the run in progress
            config = {"targets": [dict(r["target"]) for r in rows], "prior_overall": overall}
            result = await start_job(self.runs, dict(job), trigger="webhook", config=config)
            if result.outcome == "started":
                await conn.execute(SQL["webhooks.mark_dispatched"], ids, result.run_id, "queued")
                log.info(
                    "webhook run started",
                    integration_id=integration_id,
                    run_id=result.run_id,
                    targets=len(ids),
                )
                return result.run_id
            if result.outcome in ("failed", "skipped"):
                await self._drop(conn, ids, integration_id, f"run {result.outcome}")
                return None
            return None  # already running: the next pass tries again

    async def _drop(
        self, conn: asyncpg.Connection, ids: list[int], integration_id: int, reason: str
    ) -> None:
        await conn.execute(SQL["webhooks.mark_dispatched"], ids, None, "dropped")
        log.info("webhook targets dropped", integration_id=integration_id, reason=reason)

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        async with self.pool.acquire() as conn:
            await conn.execute(SQL["webhooks.prune"])
