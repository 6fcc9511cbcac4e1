"""Helpers shared by the chaos scenarios (no tests here).

A scenario runs the Jira simulator in the test process, a real `etld run --role workers`
subprocess (or an in-process Daemon) doing the work, and a controller in the test
process that starts the job and runs the scheduler's watchdog and outbox sweep. At the
end it compares PostgreSQL with the simulator's ground truth and looks at what RabbitMQ
still holds.

`ETLD_CHAOS_FULL=1` (what `make chaos` sets) turns on the full repetition counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from etld import scheduler as scheduler_module
from etld.broker.topology import Topology
from etld.config import Config, parse_config
from etld.daemon import Daemon
from etld.jobs.control import get_job, start_job
from etld.jobs.runs import Runs
from etld.scheduler import Scheduler
from etld.simulator import ApiCallCounter, FaultPlan, JiraSite, create_jira_app, generate_site
from tests.e2e.test_jira_e2e import assert_ground_truth
from tests.integration.test_broker_support import amqp

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("ETLD_CHAOS_FULL", "") not in ("", "0")
NOW = datetime(2025, 3, 1, tzinfo=UTC)
TOKEN_ENV = "ETLD_CHAOS_JIRA_TOKEN"
USER, TOKEN = "etl@example.com", "chaos-token-7f3a9c"


def sized(short: int, full: int) -> int:
    """The short figure in `make test`, the full one under `make chaos`."""
    return full if FULL else short


@dataclass
class Site:
    site: JiraSite
    counter: ApiCallCounter
    plan: FaultPlan
    server: TestServer

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


async def jira_site(
    aiohttp_server: Any,
    issues: int,
    plan: FaultPlan | None = None,
    middlewares: tuple[Any, ...] = (),
) -> Site:
    site = generate_site(issues, 11, now=NOW)
    counter = ApiCallCounter()
    plan = plan if plan is not None else FaultPlan(requests_per_second=10_000)
    app = create_jira_app(site, user=USER, token=TOKEN, faults=plan, counter=counter)
    for middleware in middlewares:
        app.middlewares.insert(0, middleware)  # before the simulator's own
    server: TestServer = await aiohttp_server(app)
    return Site(site, counter, plan, server)


def raw_config(
    db_url: str,
    amqp_url: str,
    base_url: str,
    *,
    consumers: int = 4,
    grace: float = 10.0,
    stuck_after: float = 3600.0,
    scheduler: bool = False,
    http: dict[str, Any] | None = None,
) -> dict[str, Any]:
    integration: dict[str, Any] = {
        "tenant": "acme",
        "name": "jira",
        "provider": "jira",
        "base_url": base_url,
        "username": USER,
        "token_env": TOKEN_ENV,
        "allow_private_network": True,
    }
    if http:
        integration["settings"] = {"http": http}
    return {
        "database": {"url": db_url, "min_connections": 1, "max_connections": 8},
        "rabbitmq": {"url": amqp_url, "retry_delays": [0.2, 0.5, 1.0]},
        "pipeline": {"tiers": ["free"], "job_workers": 1},
        "workers": {"free": {"extraction": consumers, "transform": consumers, "embedding": 0}},
        "scheduler": {
            "enabled": scheduler,
            "tick_interval": 0.5,
            "stuck_after": stuck_after,
            "watchdog_action": "requeue",
        },
        "web": {"port": 0},
        "daemon": {"grace_period": grace, "connect_timeout": 5.0},
        "logging": {"level": "info", "format": "json"},
        "embeddings": {"enabled": False},
        "tenants": [{"name": "acme", "tier": "free"}],
        "integrations": [integration],
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list) and all(not isinstance(v, dict) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML here")


def to_toml(raw: dict[str, Any]) -> str:
    """Just enough TOML for the configs above: tables, nested tables, arrays of tables."""
    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        nested = {k: v for k, v in body.items() if isinstance(v, dict)}
        for key, value in body.items():
            if not isinstance(value, dict):
                lines.append(f"{key} = {_toml_value(value)}")
        for key, value in nested.items():
            table(f"{name}.{key}", value)

    for name, body in raw.items():
        if isinstance(body, list):
            for entry in body:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in entry.items())
        else:
            table(name, body)
    return "\n".join(lines) + "\n"


@dataclass
class WorkerProcess:
    """`etld run --role workers` as a real process, its output in a file."""

    config_path: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self, **env: str) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("ETLD_")}
        base.update({TOKEN_ENV: TOKEN, **self.extra_env, **env})
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"--- start {self.starts} ---\n".encode())
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "etld", "--config", str(self.config_path),
                "run", "--role", "workers",
                cwd=ROOT, env=base, stdout=out, stderr=out,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill9(self) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        return await self.proc.wait()

    async def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident set size now (`VmHWM`: its peak), from /proc; 0 once the process is gone."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return 0
        for line in text.splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        return 0

    async def stop(self) -> None:
        if self.running:
            with contextlib.suppress(TimeoutError):
                await self.terminate(20)
        if self.running:
            await self.kill9()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


async def queue_state(amqp_url: str, config: Config) -> dict[str, tuple[int, int]]:
    """(ready, consumers) of every queue etld declares, by passive declares."""
    out: dict[str, tuple[int, int]] = {}
    async with amqp(amqp_url) as channel:
        for spec in Topology(config).all_queues():
            ok = await channel.queue_declare(spec.name, passive=True)
            out[spec.name] = (ok.message_count or 0, ok.consumer_count or 0)
    return out


async def consumers_ready(amqp_url: str, config: Config) -> bool:
    try:
        state = await queue_state(amqp_url, config)
    except Exception:
        return False  # the topology is not declared yet, or the broker is away
    # Embedding has no consumers here (embeddings are off).
    names = [s.name for s in Topology(config).stage_queues() if s.stage != "embedding"]
    return all(state[name][1] >= 1 for name in names)


async def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll an async predicate; returns the seconds it took."""
    began = time.monotonic()
    while True:
        try:
            if await predicate():
                return time.monotonic() - began
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # PostgreSQL is being restarted: ask again
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Controller:
    """The test's side of a run: a Daemon without roles, a job started by hand, and the
    scheduler's watchdog and outbox sweep ticking (with a short outbox grace)."""

    daemon: Daemon
    scheduler: Scheduler | None
    job_id: int = 0
    run_id: int = 0

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.daemon.pool is not None
        return self.daemon.pool

    @property
    def runs(self) -> Runs:
        runs: Runs = self.daemon.services["runs"]
        return runs

    async def start_full_sync(self) -> int:
        async with self.pool.acquire() as conn:
            self.job_id = await conn.fetchval("SELECT id FROM etl_jobs WHERE name = 'jira'")
        job = await get_job(self.pool, self.job_id)
        assert job is not None
        result = await start_job(self.runs, job, trigger="manual", full_sync=True)
        assert result.outcome == "started", result
        async with self.pool.acquire() as conn:
            self.run_id = await conn.fetchval(
                "SELECT id FROM etl_job_runs WHERE job_id = $1 AND outcome = 'RUNNING'",
                self.job_id,
            )
        return self.run_id

    async def run_row(self) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM etl_job_runs WHERE id = $1", self.run_id)
        assert row is not None
        return dict(row)

    async def done_items(self) -> int:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT count(*) FROM etl_run_items WHERE run_id = $1 AND state = 'done'",
                self.run_id,
            )
        return int(value)

    async def stuck_notes(self) -> int:
        """How many times the watchdog found this run stuck."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE run_id = $1 AND kind = 'run_stuck'",
                self.run_id,
            )
        return int(value)

    async def wait_for_end(self, timeout: float) -> dict[str, Any]:
        async def ended() -> bool:
            outcome: str = (await self.run_row())["outcome"]
            return outcome != "RUNNING"

        await wait_for(ended, timeout, f"run {self.run_id} to end", interval=0.2)
        return await self.run_row()


@contextlib.asynccontextmanager
async def controller(
    raw: dict[str, Any], *, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Controller]:
    """Seed, migrate, and tick the watchdog (no job is started by the scheduler itself:
    the tenant's job is RUNNING by the time the scheduler starts)."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    monkeypatch.setattr(scheduler_module, "UNPUBLISHED_GRACE", timedelta(seconds=2))
    quiet = {**raw, "logging": {"level": "warning", "format": "console"}}
    daemon = Daemon(parse_config(quiet), frozenset())
    await daemon.start()
    ctl = Controller(daemon, None)
    try:
        yield ctl
    finally:
        if ctl.scheduler is not None:
            await ctl.scheduler.stop_taking_work()
            await ctl.scheduler.close()
        await daemon.shutdown()


async def start_watchdog(ctl: Controller, raw: dict[str, Any], stuck_after: float) -> None:
    ticking = {**raw, "scheduler": {**raw["scheduler"], "enabled": True}}
    ticking["scheduler"]["stuck_after"] = stuck_after
    config = parse_config(ticking)
    ctl.scheduler = Scheduler(ctl.runs, config, config.database.url)
    await ctl.scheduler.start()


async def assert_clean_end(
    ctl: Controller, site: Site, amqp_url: str, config: Config, workers: WorkerProcess | None
) -> dict[str, Any]:
    """The run FINISHED, the tables equal the ground truth, nothing duplicated, nothing
    dead-lettered, and once the workers are stopped no message is left in any queue."""
    run = await ctl.run_row()
    assert run["outcome"] == "FINISHED", run["error"]
    await assert_ground_truth(ctl.pool, site.site)
    async with ctl.pool.acquire() as conn:
        items, distinct = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT external_id) FROM work_items"
        )
        changes, distinct_changes = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (work_item_id, external_id)) FROM changelogs"
        )
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
        pending = await conn.fetchval(
            "SELECT count(*) FROM etl_run_items WHERE run_id = $1 AND state <> 'done'",
            ctl.run_id,
        )
        stages = await conn.fetch("SELECT * FROM etl_run_stages WHERE run_id = $1", ctl.run_id)
    assert items == distinct == len(list(site.site.issues()))
    assert changes == distinct_changes
    assert dead == 0
    assert pending == 0
    for row in stages:
        assert row["created"] == row["done"], dict(row)

    # Stray copies (redeliveries of settled items) are dropped by the workers; wait for
    # the queues to empty, then stop the workers so anything unacked would show as ready.
    async def drained() -> bool:
        state = await queue_state(amqp_url, config)
        return all(ready == 0 for ready, _ in state.values())

    await wait_for(drained, 60, "the queues to drain")
    if workers is not None:
        assert await workers.terminate(30) == 0
    left = {q: r for q, (r, _) in (await queue_state(amqp_url, config)).items() if r}
    assert left == {}, left
    return run
