"""R4: RabbitMQ restarted during a Jira sync; R7: SIGTERM of the workers under load.

R4 stops and starts the shared RabbitMQ application (always started again, in a finally
block) while a real `etld run --role workers` process works through a sync slowed by
source latency. Its consumers must be back within 30 s and the run must finish with the
ground truth, no dead letter and no message left.

R7 sends SIGTERM to the workers in the middle of a sync: the process must exit 0 within
its grace period, and a new process must finish the run without the watchdog, which
proves no message was acked for work that was not done (an acked but unfinished item
would leave the run waiting forever).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from etld.config import parse_config
from etld.simulator import FaultPlan
from tests.chaos.harness import (
    WorkerProcess,
    assert_clean_end,
    consumers_ready,
    controller,
    jira_site,
    raw_config,
    sized,
    start_watchdog,
    to_toml,
    wait_for,
)
from tests.conftest import rabbitmqctl

RESTARTS = sized(1, 10)


@pytest.mark.parametrize("repetition", range(RESTARTS))
async def test_r4_rabbitmq_restart_during_a_sync(
    repetition: int,
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = FaultPlan(requests_per_second=10_000, latency_ms=150)
    site = await jira_site(aiohttp_server, 1000, plan)
    raw = raw_config(db_url, amqp_url, site.base_url)
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    config = parse_config(raw)
    workers = WorkerProcess(path, tmp_path / "workers.log")
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        try:
            await workers.start()
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            await ctl.start_full_sync()
            await start_watchdog(ctl, raw, 10.0)
            await wait_for(lambda: _done_at_least(ctl, 5 + 3 * repetition), 60, "some items")
            try:
                await asyncio.to_thread(rabbitmqctl, "stop_app")
                await asyncio.sleep(1.0)
            finally:
                await asyncio.to_thread(rabbitmqctl, "start_app")
            back = await wait_for(lambda: consumers_ready(amqp_url, config), 30, "consumers back")
            run = await ctl.wait_for_end(120)
            assert workers.running, workers.log_text()[-2000:]
            await assert_clean_end(ctl, site, amqp_url, config, workers)
            print(f"R4 rep {repetition}: consumers back {back:.1f} s after start_app, "
                  f"run {run['id']} {run['outcome']}")  # fmt: skip
        finally:
            await workers.stop()


async def _done_at_least(ctl: Any, count: int) -> bool:
    return bool(await ctl.done_items() >= count)


async def test_r7_sigterm_under_load_drains_and_acks_only_done_work(
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grace = 10.0
    plan = FaultPlan(requests_per_second=10_000, latency_ms=300)
    site = await jira_site(aiohttp_server, 1000, plan)
    raw = raw_config(db_url, amqp_url, site.base_url, consumers=8, grace=grace)
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    config = parse_config(raw)
    workers = WorkerProcess(path, tmp_path / "workers.log")
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        try:
            await workers.start()
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            await ctl.start_full_sync()
            await start_watchdog(ctl, raw, 3600.0)  # outbox sweep only: no repair
            await wait_for(lambda: _done_at_least(ctl, 8), 60, "some items")
            began = time.monotonic()
            code = await workers.terminate(grace + 10)
            drained_in = time.monotonic() - began
            assert code == 0, workers.log_text()[-2000:]
            assert drained_in < grace + 2
            assert (await ctl.run_row())["outcome"] == "RUNNING"
            await workers.start()
            run = await ctl.wait_for_end(120)
            await assert_clean_end(ctl, site, amqp_url, config, workers)
            async with ctl.pool.acquire() as conn:
                stuck = await conn.fetchval(
                    "SELECT count(*) FROM notifications WHERE kind = 'run_stuck'"
                )
            assert stuck == 0
            print(f"R7: drained and exited in {drained_in:.1f} s (grace {grace:g} s), "
                  f"run {run['id']} finished after the restart")  # fmt: skip
        finally:
            await workers.stop()
