"""R5: PostgreSQL restarted in the middle of a run.

The shared PostgreSQL cluster is restarted (always brought back, in a finally block)
while a real `etld run --role workers` process works through a Jira sync slowed by
source latency. Handlers that lose their database must try again without using up
their attempts: nothing is dead-lettered because of the outage, and the run finishes
with the ground truth.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from etld.config import parse_config
from etld.simulator import FaultPlan
from tests.chaos.harness import (
    Controller,
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

RESTARTS = sized(1, 3)
PG_CTL = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]


def _pg(action: str) -> None:
    subprocess.run([*PG_CTL, action], check=True, capture_output=True, timeout=120)


def restart_postgres() -> None:
    try:
        _pg("stop")
        time.sleep(1.0)
    finally:
        _pg("start")


async def _done_at_least(ctl: Controller, count: int) -> bool:
    return await ctl.done_items() >= count


@pytest.mark.parametrize("repetition", range(RESTARTS))
async def test_r5_postgres_restart_mid_run(
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
            await wait_for(lambda: _done_at_least(ctl, 5), 60, "some items")
            began = time.monotonic()
            await asyncio.to_thread(restart_postgres)
            outage = time.monotonic() - began
            run = await ctl.wait_for_end(180)
            finished_after = time.monotonic() - began
            assert workers.running, workers.log_text()[-3000:]
            # The watchdog's scheduler loop outlived the outage too.
            assert ctl.scheduler is not None
            await asyncio.sleep(1.5)  # a few ticks after the restart
            task = ctl.scheduler._task
            assert task is not None
            assert not task.done()
            await assert_clean_end(ctl, site, amqp_url, config, workers)
            print(f"R5 rep {repetition}: outage {outage:.1f} s, run {run['id']} finished "
                  f"{finished_after:.1f} s after the restart began, "
                  f"watchdog repairs {await ctl.stuck_notes()}")  # fmt: skip
        finally:
            await workers.stop()
