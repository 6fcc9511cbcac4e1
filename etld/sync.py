"""One integration's job, run now through the real pipeline and followed to its end.

`run_sync` is what `etld sync` does: it finds the integration's job by tenant and
integration name (after seeding the config file's tenants and integrations, like the
daemon), starts a daemon with the workers role in this process, starts a run and follows
it until it ends. Progress comes from the job's status JSON (woken by `etld_status`
notifications, read from PostgreSQL, with a poll as a fallback), reported as one line per
step whose stage states moved. Other daemons consuming the same queues may do part of the
work; the run ledger makes that safe.

The `SyncReport` holds what the run left behind: outcome, error, API calls, records and
items per step and stage, raw pages, dead letters and the integration's rows per table.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from etld.config import Config
from etld.daemon import Daemon
from etld.jobs.control import StartResult, get_job, start_job
from etld.jobs.runs import Runs
from etld.jobs.status import STAGES
from etld.seed import seed_from_config
from etld.store.migrate import migrate
from etld.store.pool import connect, create_pool
from etld.store.queries import SQL

STATUS_CHANNEL = "etld_status"
POLL_SECONDS = 1.0  # fallback when a notification is missed
HEARTBEAT_SECONDS = 10.0  # a running step's counters are repeated this often at most
ENDED = ("FINISHED", "FAILED", "SKIPPED")

Say = Callable[[str], None]


class UnknownTarget(Exception):
    """The tenant or integration named does not exist (a usage error)."""


@dataclass(frozen=True)
class SyncRequest:
    tenant: str
    integration: str
    full: bool = False
    retransform: bool = False
    custom_fields: bool = False
    timeout: float | None = None

    @property
    def trigger(self) -> str:
        return "retransform" if self.retransform else "manual"

    def job_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.retransform:
            config["retransform"] = True
        if self.custom_fields:
            config["custom_fields_sync"] = True
        return config


@dataclass(frozen=True)
class Target:
    tenant_id: int
    integration_id: int
    job_id: int
    provider: str
    active: bool
    base_url: str | None


@dataclass
class SyncReport:
    tenant: str
    integration: str
    provider: str
    outcome: str  # FINISHED | FAILED | SKIPPED | TIMEOUT | INTERRUPTED | NOT_STARTED
    run_id: int | None = None
    error: str | None = None
    trigger: str = "manual"
    full_sync: bool = False
    duration_seconds: float = 0.0
    api_calls: int = 0
    records: dict[str, int] = field(default_factory=dict)
    peak_memory_bytes: int | None = None
    pages: int = 0
    page_bytes: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)  # status JSON cells + counters
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.outcome == "FINISHED":
            return 0
        return 130 if self.outcome == "INTERRUPTED" else 1

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# -- finding the job ---------------------------------------------------------------------------


async def resolve(pool: asyncpg.Pool, tenant: str, integration: str) -> Target:
    """The integration's job; `UnknownTarget` with the names that do exist otherwise."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["sync.tenant_by_name"], tenant)
        if row is None:
            names = [r["name"] for r in await conn.fetch(SQL["sync.tenant_names"])]
            known = ", ".join(names) if names else "none yet"
            raise UnknownTarget(f"no tenant named {tenant!r} (tenants: {known})")
        tenant_id = int(row["id"])
        found = await conn.fetchrow(SQL["sync.integration_of_tenant"], tenant_id, integration)
        if found is None:
            names = [r["name"] for r in await conn.fetch(SQL["sync.integration_names"], tenant_id)]
            known = ", ".join(names) if names else "it has none"
            raise UnknownTarget(
                f"tenant {tenant!r} has no integration named {integration!r} "
                f"(integrations: {known})"
            )
    if found["job_id"] is None:
        raise UnknownTarget(f"integration {tenant}/{integration} has no job")
    return Target(
        tenant_id=tenant_id,
        integration_id=int(found["integration_id"]),
        job_id=int(found["job_id"]),
        provider=str(found["provider"]),
        active=bool(found["integration_active"]),
        base_url=found["base_url"],
    )


async def prepare(config: Config, request: SyncRequest) -> Target:
    """Migrate, seed the file's tenants and integrations, and find the target."""
    timeout = config.daemon.connect_timeout
    await migrate(config.database.url, timeout=timeout)
    pool = await create_pool(
        config.database.url,
        min_size=1,
        max_size=2,
        timeout=timeout,
        command_timeout=config.database.command_timeout,
    )
    try:
        await seed_from_config(pool, config)
        return await resolve(pool, request.tenant, request.integration)
    finally:
        await pool.close()


# -- running -------------------------------------------------------------------------------------


async def run_sync(
    config: Config,
    request: SyncRequest,
    *,
    say: Say = print,
    daemon: Daemon | None = None,
    handle_signals: bool = False,
) -> SyncReport:
    """Run the integration's job to its end. With `daemon` (already started) its workers
    and pool are used; otherwise a workers-only daemon runs for the duration."""
    target = await prepare(config, request)
    if daemon is not None:
        return await _follow(daemon, target, request, say, handle_signals)
    own = Daemon(config, frozenset({"workers"}))
    try:
        await own.start()
        return await _follow(own, target, request, say, handle_signals)
    finally:
        await own.shutdown()


async def _follow(
    daemon: Daemon, target: Target, request: SyncRequest, say: Say, handle_signals: bool
) -> SyncReport:
    pool, runs = daemon.pool, daemon.services["runs"]
    assert pool is not None
    assert isinstance(runs, Runs)
    report = SyncReport(request.tenant, request.integration, target.provider, "NOT_STARTED")
    report.trigger, report.full_sync = request.trigger, request.full
    wake = asyncio.Event()
    stop = asyncio.Event()

    def on_status(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(orjson.JSONDecodeError):
            event = orjson.loads(payload)
            if isinstance(event, dict) and event.get("job_id") == target.job_id:
                wake.set()

    listener = await connect(daemon.config.database.url, daemon.config.daemon.connect_timeout)
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        await listener.add_listener(STATUS_CHANNEL, on_status)
        job = await get_job(pool, target.job_id)
        if job is None:
            raise UnknownTarget(f"job {target.job_id} vanished")
        started = await start_job(
            runs,
            job,
            trigger=request.trigger,
            full_sync=request.full,
            config=request.job_config() or None,
        )
        if started.run_id is None:
            report.error = await _not_started(pool, target, started)
            return report
        report.run_id = started.run_id
        if started.outcome == "skipped":  # inactive integration: the run ended at once
            report.outcome = "SKIPPED"
            return await _filled(pool, target, report)
        kind = "retransform" if request.retransform else ("full" if request.full else "incremental")
        say(f"run {started.run_id} started: {request.tenant}/{request.integration} "
            f"({target.provider}, {kind})")  # fmt: skip
        report.outcome = await _watch(pool, runs, target, request, started.run_id, say, wake, stop)
    finally:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await listener.close()
    return await _filled(pool, target, report)


async def _not_started(pool: asyncpg.Pool, target: Target, started: StartResult) -> str:
    if started.outcome == "already_running":
        async with pool.acquire() as conn:
            running = await conn.fetchval(SQL["runs.running_run_of_job"], target.job_id)
        return f"the job is already running (run {running}); wait for it or reset it"
    return f"the run could not start ({started.outcome})"


async def _watch(
    pool: asyncpg.Pool,
    runs: Runs,
    target: Target,
    request: SyncRequest,
    run_id: int,
    say: Say,
    wake: asyncio.Event,
    stop: asyncio.Event,
) -> str:
    """Report progress until the run ends, the timeout passes or a signal stops us."""
    begun = time.monotonic()
    deadline = begun + request.timeout if request.timeout else None
    printer = _ProgressPrinter(say, begun)
    while True:
        wake.clear()
        async with pool.acquire() as conn:
            now = await conn.fetchrow(SQL["sync.run_progress"], run_id)
            stages = await conn.fetch(SQL["sync.run_stages"], run_id)
        outcome = now["outcome"]
        printer.update(now["status"], stages)
        if outcome in ENDED:
            return str(outcome)
        if stop.is_set():
            await runs.fail_run(run_id, "interrupted: etld sync was stopped")
            return "INTERRUPTED"
        if deadline is not None and time.monotonic() >= deadline:
            await runs.fail_run(run_id, f"etld sync gave up after {request.timeout:g}s")
            return "TIMEOUT"
        waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
        limit = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - time.monotonic())
        await asyncio.wait(waits, timeout=max(0.0, limit), return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()


class _ProgressPrinter:
    """One line per step whose stage states changed; a running step's counters at most
    every HEARTBEAT_SECONDS otherwise."""

    def __init__(self, say: Say, begun: float) -> None:
        self.say = say
        self.begun = begun
        self.states: dict[str, tuple[str, ...]] = {}
        self.counts: dict[str, tuple[tuple[int, int], ...]] = {}
        self.printed_at: dict[str, float] = {}

    def update(self, status: Any, stages: list[asyncpg.Record]) -> None:
        counters = {(r["step"], r["stage"]): r for r in stages}
        steps = status.get("steps") if isinstance(status, dict) else None
        if not isinstance(steps, dict):
            return
        ordered = sorted(steps.items(), key=lambda kv: int(kv[1].get("order", 0)))
        now = time.monotonic()
        for name, cells in ordered:
            states = tuple(str(cells.get(stage, "idle")) for stage in STAGES)
            counts = tuple(
                (int(c["done"]), int(c["created"]))
                for stage in STAGES
                if (c := counters.get((name, stage))) is not None
            )
            changed = states != self.states.get(name, ("idle",) * len(STAGES))
            beat = (
                "running" in states
                and counts != self.counts.get(name)
                and now - self.printed_at.get(name, self.begun) >= HEARTBEAT_SECONDS
            )
            if not (changed or beat):
                continue
            self.states[name], self.counts[name], self.printed_at[name] = states, counts, now
            cells_text = []
            for stage, state in zip(STAGES, states, strict=True):
                c = counters.get((name, stage))
                shown = f"{stage} {state}"
                if c is not None and c["created"]:
                    shown += f" {c['done']}/{c['created']}"
                cells_text.append(shown)
            label = f"{cells.get('order', '?')}/{len(ordered)} {cells.get('display_name', name)}"
            self.say(f"[{now - self.begun:7.1f}s] {label:<32} {' · '.join(cells_text)}")


# -- the report ------------------------------------------------------------------------------------


async def _filled(pool: asyncpg.Pool, target: Target, report: SyncReport) -> SyncReport:
    await _fill(pool, target, report)
    return report


async def _fill(pool: asyncpg.Pool, target: Target, report: SyncReport) -> None:
    async with pool.acquire() as conn:
        counts = await conn.fetch(SQL["sync.table_counts"], target.integration_id)
        report.tables = {
            r["table_name"]: {"rows": int(r["total"]), "deleted": int(r["deleted"])} for r in counts
        }
        if report.run_id is None:
            return
        run = await conn.fetchrow(SQL["sync.run"], report.run_id)
        stages = await conn.fetch(SQL["sync.run_stages"], report.run_id)
        pages = await conn.fetchrow(SQL["sync.run_pages"], report.run_id)
        letters = await conn.fetch(SQL["sync.run_dead_letters"], report.run_id)
        progress = await conn.fetchrow(SQL["sync.run_progress"], report.run_id)
    if run is None:
        return
    if report.outcome not in ("TIMEOUT", "INTERRUPTED"):
        report.outcome = str(run["outcome"])
    report.error = run["error"] or run["alert"]
    report.trigger, report.full_sync = str(run["trigger"]), bool(run["full_sync"])
    report.duration_seconds = float(run["duration_seconds"] or 0.0)
    report.api_calls = int(run["api_calls"])
    report.records = {k: int(v) for k, v in (run["records"] or {}).items()}
    report.peak_memory_bytes = run["peak_memory_bytes"]
    report.pages, report.page_bytes = int(pages["pages"]), int(pages["bytes"])
    report.dead_letters = [dict(r) for r in letters]
    counters = {(r["step"], r["stage"]): dict(r) for r in stages}
    status = progress["status"] if progress is not None else None
    steps = status.get("steps", {}) if isinstance(status, dict) else {}
    for name, cells in sorted(steps.items(), key=lambda kv: int(kv[1].get("order", 0))):
        entry: dict[str, Any] = {
            "name": name,
            "display_name": cells.get("display_name", name),
            "order": cells.get("order"),
        }
        for stage in STAGES:
            c = counters.get((name, stage), {})
            entry[stage] = {
                "state": cells.get(stage, "idle"),
                "created": int(c.get("created", 0)),
                "done": int(c.get("done", 0)),
                "failed": int(c.get("failed", 0)),
                "records": int(c.get("records", 0)),
            }
        report.steps.append(entry)
