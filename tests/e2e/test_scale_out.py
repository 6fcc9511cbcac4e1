"""Scale-out: three `etld run` processes on one database and one RabbitMQ vhost.

One daemon runs `--role scheduler,web`, two run `--role workers`, as they would on three
hosts. The scheduler starts the Jira job of a simulated 2,000-issue site on its own; the
run must end FINISHED with exactly the site's ground truth, and both worker daemons must
have done a share of the transform work. Each daemon's share comes from `etld workers
status --json`, which every workers daemon answers through `etl.control` with the number
of deliveries each of its consumers processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from structlog.testing import capture_logs

from etld.broker.control import NoDaemons, workers_status
from etld.broker.session import broker_session
from etld.config import load_config
from etld.simulator import ApiCallCounter, FaultPlan, JiraSite, create_jira_app, generate_site
from tests.e2e.test_jira_e2e import assert_ground_truth

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 3, 1, tzinfo=UTC)
ISSUES = 2000
TOKEN_ENV = "ETLD_SCALE_JIRA_TOKEN"
INTERNAL_KEY = "scale-out-internal-key-0123456789"
TRANSFORM_QUEUE = "transform_queue_free"
MIN_SHARE = 0.2  # each worker daemon's least share of the transform deliveries
RUN_TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def quiet_logs() -> Any:
    with capture_logs() as logs:
        yield logs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, db_url: str, amqp_url: str, base_url: str, port: int) -> Path:
    # Every process reads the same file, as hosts of one deployment would.
    path.write_text(
        f"""
[database]
url = "{db_url}"
min_connections = 1
max_connections = 6

[rabbitmq]
url = "{amqp_url}"
retry_delays = [0.05, 0.1, 0.2]

[pipeline]
job_workers = 1

[workers.free]
extraction = 2
transform = 2
embedding = 0

[scheduler]
tick_interval = 0.5

[web]
port = {port}

[security]
internal_auth_key = "{INTERNAL_KEY}"

[daemon]
grace_period = 10.0
connect_timeout = 10.0

[logging]
level = "warning"
format = "json"

[embeddings]
enabled = false

[[tenants]]
name = "acme"
tier = "free"

[[integrations]]
tenant = "acme"
name = "jira"
provider = "jira"
base_url = "{base_url}"
username = "etl@example.com"
token_env = "{TOKEN_ENV}"
allow_private_network = true
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Daemon:
    role: str
    proc: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return f"--- {self.role} (pid {self.proc.pid}) ---\n" + self.log.read_text(errors="replace")


@dataclass
class Cluster:
    config: Path
    port: int
    daemons: list[Daemon]
    tmp: Path

    async def start(self, role: str) -> Daemon:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETLD_")}
        env[TOKEN_ENV] = "scale-token"
        log = self.tmp / f"{role.replace(',', '+')}-{len(self.daemons)}.log"
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "etld", "--config", str(self.config), "run",
                "--role", role,
                cwd=ROOT, env=env, stdout=sink, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        daemon = Daemon(role, proc, log)
        self.daemons.append(daemon)
        return daemon

    def logs(self) -> str:
        return "\n".join(d.output() for d in self.daemons)

    async def stop(self) -> list[int | None]:
        for daemon in self.daemons:
            if daemon.proc.returncode is None:
                daemon.proc.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for daemon in self.daemons:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(daemon.proc.wait(), 20)
            if daemon.proc.returncode is None:
                daemon.proc.kill()
                await daemon.proc.wait()
                codes.append(None)
            else:
                codes.append(daemon.proc.returncode)
        return codes


@pytest.fixture
async def site_url(aiohttp_server: Any) -> tuple[JiraSite, ApiCallCounter, str]:
    site = generate_site(ISSUES, 11, now=NOW)
    counter = ApiCallCounter()
    app = create_jira_app(site, faults=FaultPlan(requests_per_second=10_000), counter=counter)
    server = await aiohttp_server(app)
    return site, counter, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def cluster(
    tmp_path: Path, db_url: str, amqp_url: str, site_url: tuple[JiraSite, ApiCallCounter, str]
) -> AsyncIterator[Cluster]:
    port = free_port()
    config = write_config(tmp_path / "etld.toml", db_url, amqp_url, site_url[2], port)
    running = Cluster(config, port, [], tmp_path)
    yield running
    await running.stop()


async def wait_for_worker_daemons(cluster: Cluster, pids: set[int], timeout: float = 30) -> None:
    """Until every workers daemon answers on etl.control (its consumers are attached)."""
    config = load_config(str(cluster.config), env={})
    deadline = time.monotonic() + timeout
    async with broker_session(config, name="scale-out-test") as (broker, publisher):
        while time.monotonic() < deadline:
            for daemon in cluster.daemons:
                assert daemon.proc.returncode is None, cluster.logs()
            with contextlib.suppress(NoDaemons):
                answers = await workers_status(broker, publisher, timeout=5)
                if {pid_of(a["daemon"]) for a in answers if a.get("ok")} == pids:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError("the workers daemons never answered\n" + cluster.logs())


def pid_of(identity: str) -> int:
    host, _, pid = identity.rpartition(":")
    assert host == socket.gethostname()
    return int(pid)


async def wait_ready(cluster: Cluster, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            for daemon in cluster.daemons:
                assert daemon.proc.returncode is None, cluster.logs()
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{cluster.port}/ready") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("the scheduler,web daemon never became ready\n" + cluster.logs())


async def wait_for_run_end(pool: asyncpg.Pool, cluster: Cluster) -> asyncpg.Record:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        for daemon in cluster.daemons:
            assert daemon.proc.returncode is None, cluster.logs()
        async with pool.acquire() as conn:
            runs = await conn.fetch("SELECT * FROM etl_job_runs ORDER BY id")
        if runs and runs[0]["outcome"] != "RUNNING":
            assert len(runs) == 1, [dict(r) for r in runs]
            return runs[0]
        await asyncio.sleep(0.2)
    raise AssertionError("the run did not end in time\n" + cluster.logs())


async def workers_status_cli(config: Path) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETLD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "etld", "--config", str(config), "workers", "status", "--json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    daemons: list[dict[str, Any]] = orjson.loads(out)["daemons"]
    return daemons


async def test_two_worker_daemons_share_a_full_sync(
    cluster: Cluster, pool: asyncpg.Pool, site_url: tuple[JiraSite, ApiCallCounter, str]
) -> None:
    site, counter, _ = site_url
    began = time.monotonic()
    workers = [await cluster.start("workers"), await cluster.start("workers")]
    await wait_for_worker_daemons(cluster, {w.proc.pid for w in workers})
    # The scheduler last, so that both workers consume before the first message exists.
    await cluster.start("scheduler,web")
    await wait_ready(cluster)

    run = await wait_for_run_end(pool, cluster)
    assert (run["outcome"], run["error"]) == ("FINISHED", None), cluster.logs()
    took = time.monotonic() - began

    # The web daemon serves the run it scheduled.
    async with (
        aiohttp.ClientSession(headers={"X-Internal-Auth": INTERNAL_KEY}) as session,
        session.get(f"http://127.0.0.1:{cluster.port}/app/etl/jobs/{run['job_id']}/runs") as resp,
    ):
        assert resp.status == 200
        runs = (await resp.json())["runs"]
    assert [(r["id"], r["outcome"], r["trigger"]) for r in runs] == [
        (run["id"], "FINISHED", "schedule")
    ]
    assert run["api_calls"] == counter.total

    # Exactly the site: counts first, then every issue field by field.
    truths = list(site.issues())
    async with pool.acquire() as conn:
        items = await conn.fetchval("SELECT count(*) FROM work_items WHERE deleted_at IS NULL")
        changelogs = await conn.fetchval("SELECT count(*) FROM changelogs")
        stages = {
            (r["step"], r["stage"]): r
            for r in await conn.fetch("SELECT * FROM etl_run_stages WHERE run_id = $1", run["id"])
        }
        dead = await conn.fetchval("SELECT count(*) FROM dead_letters")
    assert items == ISSUES
    assert changelogs == sum(len(t.transitions) for t in truths)
    assert dead == 0
    assert all(s["done"] == s["created"] and s["failed"] == 0 for s in stages.values())
    await assert_ground_truth(pool, site)

    # Both workers daemons took a share of the transform items; the scheduler,web daemon
    # consumes nothing and so does not answer.
    answers = await workers_status_cli(cluster.config)
    assert {pid_of(a["daemon"]) for a in answers} == {w.proc.pid for w in workers}
    shares = {
        pid_of(a["daemon"]): sum(
            w["processed"] for w in a["workers"] if w["queue"] == TRANSFORM_QUEUE
        )
        for a in answers
    }
    transform_items = sum(s["done"] for (_, stage), s in stages.items() if stage == "transform")
    assert transform_items >= ISSUES // 100  # one per search page at least
    assert sum(shares.values()) >= transform_items
    for pid, share in shares.items():
        assert share >= MIN_SHARE * transform_items, (pid, shares, transform_items)
    jobs = [w["processed"] for a in answers for w in a["workers"] if w["queue"] == "etl.jobs"]
    assert sorted(jobs) == [0, 1]  # the one job message went to one daemon
    run_seconds = (run["finished_at"] - run["started_at"]).total_seconds()
    print(
        f"\nscale-out: {ISSUES} issues FINISHED in {run_seconds:.1f}s "
        f"(first start to end {took:.1f}s); transform deliveries per workers daemon: "
        f"{sorted(shares.values())} of {transform_items} items"
    )

    codes = await cluster.stop()
    assert codes == [0, 0, 0], cluster.logs()
