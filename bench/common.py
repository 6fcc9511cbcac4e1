"""What the benchmarks share: private databases and vhosts, child processes, results.

Every bench works on a fresh PostgreSQL database and a fresh RabbitMQ virtual host, made
for it and dropped afterwards, on the local servers (`ETLD_BENCH_PG`, `ETLD_BENCH_AMQP`).
Figures are printed as a table (each etld figure next to its limit or target) and written
as JSON to `bench/results/<name>.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

PG_SERVER = os.environ.get("ETLD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def pg_url(database: str) -> str:
    """`database` on the bench's server; a query string in ETLD_BENCH_PG (a Unix socket's
    `?host=/var/run/postgresql`, say) stays at the end."""
    base, sep, query = PG_SERVER.partition("?")
    return f"{base.rstrip('/')}/{database}{sep}{query}"


AMQP_SERVER = os.environ.get("ETLD_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672")
RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


# -- server CPU ----------------------------------------------------------------------------------

# Process names of the local servers whose CPU a bench reports beside its own.
SERVER_PROCESSES = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}


def server_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every local PostgreSQL and RabbitMQ process (from /proc;
    empty where there is no /proc). Differences between two readings are what the servers
    spent in between, including on anything else the machine ran."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    totals = dict.fromkeys(SERVER_PROCESSES.values(), 0.0)
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = entry.read_text()
        except OSError:
            continue  # the process ended while we looked
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        label = SERVER_PROCESSES.get(name)
        if label is None:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        totals[label] += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return totals


# -- private servers -------------------------------------------------------------------------


async def pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(pg_url("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextlib.asynccontextmanager
async def fresh_database(label: str) -> AsyncIterator[str]:
    """The URL of an empty database, dropped on exit (migrations are the caller's) unless
    ETLD_BENCH_KEEP is set, to look into what a run wrote."""
    name = f"etld_bench_{label}_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        if os.environ.get("ETLD_BENCH_KEEP"):
            print(f"kept database {name}")
        else:
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_vhost(label: str) -> Any:
    """The URL of a new RabbitMQ virtual host, deleted on exit."""
    vhost = f"etld_bench_{label}_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{AMQP_SERVER}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- child processes -----------------------------------------------------------------------------


async def run_module(module: str, *args: str, timeout: float = 1800) -> dict[str, Any]:
    """Run `python -m <module> args`; its last stdout line is a JSON result."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module} {' '.join(args)} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@contextlib.asynccontextmanager
async def server_process(module: str, *args: str, ready: str = "ready") -> AsyncIterator[int]:
    """A child serving until we leave; yields its pid once it printed `ready`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT)
    )
    assert proc.stdout is not None
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 600)
            if not line:
                raise RuntimeError(f"{module} exited before it was ready")
            if line.decode().strip() == ready:
                break
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# -- reporting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One line of a result table: etld's figure, what it is compared with, and the verdict."""

    name: str
    value: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    ok: bool | None = None


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "BELOW TARGET")


def print_table(title: str, figures: Sequence[Figure], notes: Sequence[str] = ()) -> None:
    header = ("figure", "etld", "limit / reference", "ratio", "target", "")
    rows = [(f.name, f.value, f.reference, f.ratio, f.target, _verdict(f.ok)) for f in figures]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for note in notes:
        print(f"  {note}")


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    stamped = {"bench": name, "at": datetime.now(UTC).isoformat(timespec="seconds"), **result}
    path.write_text(json.dumps(stamped, indent=2, default=str) + "\n")
    return path
