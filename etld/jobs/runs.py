"""Runs and their work ledger: the only place that decides a run's progress and outcome.

Every message a run produces is first recorded in `etl_run_items` (with its body, as
an outbox), then published. A handler that finishes its item marks it done in one
transaction with the run row locked; only an item that was still pending counts, so
redeliveries never double count. After each change the step-by-stage states are
recomputed from counters (`etld.jobs.status.evaluate`), the next step starts when the
current one is loaded, and the run finishes when nothing is pending. Status changes
are written to PostgreSQL first and announced with NOTIFY in the same transaction,
so a WebSocket client never sees a state the database does not hold.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import orjson

from etld.broker.topology import stage_queue
from etld.config import Config
from etld.faults import crash_point
from etld.jobs import status as st
from etld.jobs.notify import notify
from etld.jobs.schedule import schedule_after
from etld.logs import get_logger
from etld.store.queries import SQL

log = get_logger(__name__)

Clock = Callable[[], datetime]

PROGRESS_EVERY = 5.0  # seconds between progress stamps from emits of one run


def utcnow() -> datetime:
    return datetime.now(UTC)


class Publisher(Protocol):
    def publish(
        self, queue: str, message: dict[str, Any], *, headers: dict[str, Any] | None = None
    ) -> Awaitable[Any]: ...


def peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux: the process high-water mark, cheap to read.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class RunContext:
    run_id: int
    tenant_id: int
    job_id: int
    integration_id: int
    provider: str
    tier: str
    outcome: str
    current_step: int
    steps: tuple[st.StepDef, ...]
    full_sync: bool
    config: dict[str, Any]
    started_at: datetime
    last_sync_date: datetime | None
    trigger: str
    watchdog_requeues: int = 0

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RunContext:
        return cls(
            run_id=row["run_id"],
            tenant_id=row["tenant_id"],
            job_id=row["job_id"],
            integration_id=row["integration_id"],
            provider=row["provider"],
            tier=row["tier"],
            outcome=row["outcome"],
            current_step=row["current_step"],
            steps=tuple(st.StepDef(s["name"], s["display_name"]) for s in row["steps"]),
            full_sync=row["full_sync"],
            config=dict(row["config"]),
            started_at=row["started_at"],
            last_sync_date=row["last_sync_date"],
            trigger=row["trigger"],
            watchdog_requeues=row["watchdog_requeues"],
        )

    @property
    def running(self) -> bool:
        return self.outcome == "RUNNING"

    def step_index(self, step: str) -> int:
        for index, candidate in enumerate(self.steps, start=1):
            if candidate.name == step:
                return index
        raise KeyError(f"run {self.run_id} has no step {step!r}")

    def base_message(self, step: str, stage: str, item_key: str) -> dict[str, Any]:
        """The reference's message fields every stage message carries, plus run bookkeeping."""
        return {
            "tenant_id": self.tenant_id,
            "integration_id": self.integration_id,
            "job_id": self.job_id,
            "run_id": self.run_id,
            "work_id": item_key,
            "step": step,
            "stage": stage,
            "type": step,
            "provider": self.provider,
            "tier": self.tier,
            "full_sync": self.full_sync,
            "last_sync_date": self.last_sync_date.isoformat() if self.last_sync_date else None,
            "first_item": False,
            "last_item": False,
            "last_job_item": False,
        }


@dataclass
class Outgoing:
    run_id: int
    item_key: str
    queue: str
    message: dict[str, Any]


@dataclass
class _Changes:
    outgoing: list[Outgoing] = field(default_factory=list)


class Runs:
    """Run bookkeeping over a pool, a publisher and the scheduler timing."""

    def __init__(
        self, pool: asyncpg.Pool, publisher: Publisher, config: Config, clock: Clock = utcnow
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.config = config
        self.clock = clock
        self._progress_stamped: dict[int, float] = {}

    # -- reading -------------------------------------------------------------------

    async def context(
        self, run_id: int, conn: asyncpg.Connection | None = None
    ) -> RunContext | None:
        if conn is None:
            async with self.pool.acquire() as own:
                row = await own.fetchrow(SQL["runs.context"], run_id)
        else:
            row = await conn.fetchrow(SQL["runs.context"], run_id)
        return RunContext.from_row(row) if row is not None else None

    async def item_done(self, run_id: int, item_key: str) -> bool:
        async with self.pool.acquire() as conn:
            state = await conn.fetchval(SQL["runs.item_state"], run_id, item_key)
        return state is not None and state != "pending"

    # -- creating a run ------------------------------------------------------------------

    async def claim(
        self,
        conn: asyncpg.Connection,
        *,
        tenant_id: int,
        job_id: int,
        steps: Sequence[st.StepDef],
        trigger: str,
        full_sync: bool = False,
        scheduled_for: datetime | None = None,
        config: dict[str, Any] | None = None,
    ) -> int | None:
        """Create a RUNNING run (None if the job already runs or the tick was claimed).

        Call inside a transaction; the job's status is reset to a fresh RUNNING status
        in it, and announced when it commits.
        """
        run_id = await conn.fetchval(
            SQL["runs.claim_run"],
            tenant_id,
            job_id,
            trigger,
            full_sync,
            scheduled_for,
            [{"name": s.name, "display_name": s.display_name} for s in steps],
            config or {},
            self.clock(),
        )
        if run_id is None:
            return None
        await self.set_status(conn, tenant_id, job_id, st.fresh_status(steps, "RUNNING"))
        return int(run_id)

    async def start(self, run_id: int) -> None:
        """Start the first step (the job message handler); a redelivery does nothing."""
        changes = _Changes()
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(SQL["runs.lock_run"], run_id)
            if locked is None or locked["outcome"] != "RUNNING" or locked["current_step"] > 0:
                return
            ctx = await self.context(run_id, conn)
            assert ctx is not None
            if not ctx.steps:
                await self._finish(conn, ctx, "FINISHED", None, st.fresh_status(ctx.steps))
                return
            await self._start_step(conn, ctx, 1, changes)
        await self._publish(changes.outgoing)

    # -- emitting and completing items ----------------------------------------------------

    async def emit(
        self,
        ctx: RunContext,
        parent_key: str,
        children: Sequence[tuple[str, str, str, dict[str, Any]]],
    ) -> int:
        """Record and publish child items: (child_key, step, stage, payload) each.

        Keys are deterministic, so emitting again after a crash records nothing new and
        the republished message is absorbed by the done-once rule. Returns how many
        children were new.
        """
        if not children:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            outgoing = await self.record(conn, ctx, parent_key, children)
        await self.publish(outgoing)
        return len(outgoing)

    async def record(
        self,
        conn: asyncpg.Connection,
        ctx: RunContext,
        parent_key: str,
        children: Sequence[tuple[str, str, str, dict[str, Any]]],
    ) -> list[Outgoing]:
        """`emit` inside the caller's transaction: what to `publish` once it commits.

        This lets a handler record a page and the item that transforms it atomically,
        in one round of commits.
        """
        changes = _Changes()
        if self._progress_due(ctx.run_id):
            await conn.execute(SQL["runs.progress"], ctx.run_id, 0, peak_rss_bytes(), self.clock())
        for child_key, step, stage, payload in children:
            await self._add_item(
                conn, ctx, f"{parent_key}/{child_key}", step, stage, payload, changes
            )
        return changes.outgoing

    async def publish(self, outgoing: list[Outgoing]) -> None:
        await self._publish(outgoing)

    def _progress_due(self, run_id: int) -> bool:
        """Whether an emit should touch the run's progress stamp (at most every few seconds).

        The stamp only feeds the watchdog, which waits many minutes, and updating the run
        row waits for every completion that holds it; completions stamp it anyway.
        """
        now = time.monotonic()
        last = self._progress_stamped.get(run_id)
        if last is not None and now - last < PROGRESS_EVERY:
            return False
        if len(self._progress_stamped) > 1000:
            self._progress_stamped.clear()  # finished runs; a forgotten one just stamps again
        self._progress_stamped[run_id] = now
        return True

    async def complete(
        self, ctx: RunContext, item_key: str, *, records: int = 0, api_calls: int = 0
    ) -> bool:
        """Mark an item done and move the run on; False when it was already settled.

        Completions of one run are serialised by its row lock, so each is kept to a few
        statements; the stage counter goes last (see below)."""
        changes = _Changes()
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(SQL["runs.lock_run"], ctx.run_id)
            if locked is None:
                return False
            marked = await conn.fetchrow(
                SQL["runs.mark_done"],
                ctx.run_id,
                item_key,
                api_calls,
                peak_rss_bytes(),
                self.clock(),
            )
            if marked is None:
                return False
            stage = (marked["step"], marked["stage"])
            # The counter row is shared with whoever creates items of this stage (each page
            # store counts its transform item there): updated last, it stays locked for one
            # statement and the commit instead of the whole completion. A completion that
            # ends the run or starts the next step reads the counters again (totals, the next
            # step's status), so then it is updated first.
            counted = False
            if locked["outcome"] == "RUNNING":
                fresh = await self.context(ctx.run_id, conn)
                assert fresh is not None
                progress = await self._evaluate(conn, fresh, counted=stage)
                if progress.complete or progress.failed_step or progress.next_step_ready:
                    await conn.execute(SQL["runs.count_done"], ctx.run_id, *stage, records)
                    counted = True
                await self._advance(conn, fresh, changes, progress=progress)
            crash_point("status_update")
            if not counted:
                await conn.execute(SQL["runs.count_done"], ctx.run_id, *stage, records)
        await self._publish(changes.outgoing)
        return True

    async def record_api_calls(self, run_id: int, calls: int) -> None:
        if calls:
            async with self.pool.acquire() as conn:
                await conn.execute(
                    SQL["runs.progress"], run_id, calls, peak_rss_bytes(), self.clock()
                )

    async def fail_item(self, run_id: int, item_key: str, reason: str) -> None:
        """An item failed beyond retry: the run ends FAILED with the reason."""
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(SQL["runs.lock_run"], run_id)
            if locked is None:
                return
            marked = await conn.fetchrow(SQL["runs.mark_item"], run_id, item_key, "failed", reason)
            if marked is not None:
                await conn.execute(
                    SQL["runs.count_failed"], run_id, marked["step"], marked["stage"]
                )
            if locked["outcome"] != "RUNNING":
                return
            ctx = await self.context(run_id, conn)
            assert ctx is not None
            step = marked["step"] if marked is not None else "?"
            stage = marked["stage"] if marked is not None else "?"
            await self._fail(conn, ctx, f"{step} {stage} failed: {reason}")

    async def fail_run(self, run_id: int, reason: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(SQL["runs.lock_run"], run_id)
            if locked is None or locked["outcome"] != "RUNNING":
                return False
            ctx = await self.context(run_id, conn)
            assert ctx is not None
            await self._fail(conn, ctx, reason)
            return True

    async def reevaluate(self, run_id: int) -> None:
        """Recompute a run's progress (the watchdog's repair for a missed completion)."""
        changes = _Changes()
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(SQL["runs.lock_run"], run_id)
            if locked is None or locked["outcome"] != "RUNNING":
                return
            ctx = await self.context(run_id, conn)
            assert ctx is not None
            if ctx.current_step == 0:
                if ctx.steps:
                    await self._start_step(conn, ctx, 1, changes)
            else:
                await self._advance(conn, ctx, changes)
        await self._publish(changes.outgoing)

    async def republish_pending(self, run_id: int) -> int:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(SQL["runs.pending_items"], run_id)
        outgoing = [Outgoing(run_id, r["item_key"], r["queue"], dict(r["message"])) for r in rows]
        await self._publish(outgoing)
        return len(outgoing)

    async def sweep_unpublished(self, older_than: datetime, limit: int = 500) -> int:
        """Publish items recorded but never confirmed (a crash between commit and publish)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(SQL["runs.unpublished_items"], older_than, limit)
        outgoing = [
            Outgoing(r["run_id"], r["item_key"], r["queue"], dict(r["message"])) for r in rows
        ]
        await self._publish(outgoing)
        return len(outgoing)

    # -- internals ---------------------------------------------------------------------------

    async def _add_item(
        self,
        conn: asyncpg.Connection,
        ctx: RunContext,
        item_key: str,
        step: str,
        stage: str,
        payload: dict[str, Any],
        changes: _Changes,
    ) -> None:
        message = ctx.base_message(step, stage, item_key)
        message.update(payload)
        queue = stage_queue(stage, ctx.tier)
        created = await conn.fetchval(
            SQL["runs.insert_item"],
            ctx.run_id,
            item_key,
            ctx.tenant_id,
            step,
            stage,
            queue,
            message,
        )
        if created is None:
            return  # recorded before: a redelivery
        if created == 1 and not message.get("first_item"):
            # The first item recorded for a step-stage is the reference's first_item.
            message["first_item"] = True
            await conn.execute(SQL["runs.set_item_message"], ctx.run_id, item_key, message)
        changes.outgoing.append(Outgoing(ctx.run_id, item_key, queue, message))

    async def _start_step(
        self, conn: asyncpg.Connection, ctx: RunContext, index: int, changes: _Changes
    ) -> None:
        step = ctx.steps[index - 1]
        await conn.execute(SQL["runs.set_current_step"], ctx.run_id, index, self.clock())
        root = {"first_item": True, "last_item": True, "last_job_item": index == len(ctx.steps)}
        await self._add_item(conn, ctx, f"{step.name}:x", step.name, "extraction", root, changes)
        started = RunContext(**{**ctx.__dict__, "current_step": index})
        await self._advance(conn, started, changes, allow_next=False)
        log.info("step started", run_id=ctx.run_id, step=step.name, order=index)

    async def _evaluate(
        self, conn: asyncpg.Connection, ctx: RunContext, counted: tuple[str, str] | None = None
    ) -> st.Progress:
        """The run's step-by-stage states, from its per-stage counters; `counted` is a
        (step, stage) with one more item done than its counter says yet."""
        counters = {
            (r["step"], r["stage"]): st.StageCount(r["created"], r["done"], r["failed"])
            for r in await conn.fetch(SQL["runs.stage_counters"], ctx.run_id)
        }
        if counted is not None:
            seen = counters.get(counted, st.StageCount())
            counters[counted] = st.StageCount(seen.created, seen.done + 1, seen.failed)
        return st.evaluate(ctx.steps, counters, ctx.current_step)

    async def _advance(
        self,
        conn: asyncpg.Connection,
        ctx: RunContext,
        changes: _Changes,
        allow_next: bool = True,
        progress: st.Progress | None = None,
    ) -> None:
        if progress is None:
            progress = await self._evaluate(conn, ctx)
        if progress.failed_step is not None:
            await self._fail(conn, ctx, f"step {progress.failed_step} failed", progress.status)
            return
        if progress.complete:
            await self._finish(conn, ctx, "FINISHED", None, progress.status)
            return
        await self.set_status(conn, ctx.tenant_id, ctx.job_id, progress.status)
        if allow_next and progress.next_step_ready:
            await self._start_step(conn, ctx, ctx.current_step + 1, changes)

    async def _fail(
        self,
        conn: asyncpg.Connection,
        ctx: RunContext,
        reason: str,
        status: dict[str, Any] | None = None,
    ) -> None:
        if status is None:
            status = (await self._evaluate(conn, ctx)).status
        await conn.execute(SQL["runs.cancel_pending"], ctx.run_id)
        await self._finish(conn, ctx, "FAILED", reason, status)
        await notify(
            conn,
            tenant_id=ctx.tenant_id,
            job_id=ctx.job_id,
            run_id=ctx.run_id,
            kind="run_failed",
            severity="error",
            message=f"run {ctx.run_id} failed: {reason}",
        )

    async def _finish(
        self,
        conn: asyncpg.Connection,
        ctx: RunContext,
        outcome: str,
        error: str | None,
        status: dict[str, Any],
    ) -> None:
        row = await conn.fetchrow(SQL["runs.finish_run"], ctx.run_id, outcome, error)
        if row is None:
            return
        # Webhook runs fetch a few items between polls. Polling stays the source of truth:
        # they move neither last_sync_date nor the schedule, and the job keeps the overall
        # state it had (a job READY to poll stays READY); the run's own outcome is its row.
        webhook = ctx.trigger == "webhook"
        overall = str(ctx.config.get("prior_overall") or outcome) if webhook else outcome
        final = st.with_overall(status, overall)
        success = outcome == "FINISHED" and ctx.trigger not in ("retransform", "webhook")
        await conn.execute(
            SQL["runs.set_job_finished"], ctx.job_id, final, success, row["started_at"]
        )
        await self.announce(conn, ctx.tenant_id, ctx.job_id, final)
        if not webhook:
            await schedule_after(
                conn, ctx.tenant_id, ctx.job_id, self.clock(), self.config.scheduler
            )
        log.info("run ended", run_id=ctx.run_id, job_id=ctx.job_id, outcome=outcome, error=error)

    async def set_status(
        self, conn: asyncpg.Connection, tenant_id: int, job_id: int, status: dict[str, Any]
    ) -> None:
        """Store a job's status and, only if it changed, announce it: one statement."""
        event = _status_event(tenant_id, job_id, status)
        await conn.execute(SQL["runs.set_job_status_announce"], job_id, event)

    async def announce(
        self, conn: asyncpg.Connection, tenant_id: int, job_id: int, status: dict[str, Any]
    ) -> None:
        # Delivered by PostgreSQL at commit, to every daemon's listener: database first.
        await conn.execute(SQL["runs.notify_status"], _status_event(tenant_id, job_id, status))

    async def _publish(self, outgoing: list[Outgoing]) -> None:
        if not outgoing:
            return
        by_run: dict[int, list[str]] = {}
        for item in outgoing:
            await self.publisher.publish(item.queue, item.message)
            by_run.setdefault(item.run_id, []).append(item.item_key)
        async with self.pool.acquire() as conn:
            for run_id, keys in by_run.items():
                await conn.execute(SQL["runs.mark_published"], run_id, keys)


def _status_event(tenant_id: int, job_id: int, status: dict[str, Any]) -> str:
    """The WebSocket feed's message for a job's new status."""
    event = {
        "type": "job_status_update",
        "tenant_id": tenant_id,
        "job_id": job_id,
        "status": status,
    }
    return orjson.dumps(event).decode()
