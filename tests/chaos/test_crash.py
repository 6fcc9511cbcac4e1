"""R1 and R2: a worker process killed mid-sync, then restarted, loses and doubles nothing.

R1 kills a real `etld run --role workers` with SIGKILL at a random moment of a Jira full
sync (a random number of finished items) and starts it again. R2 makes it die at a named
crash point (`etld/faults.py`): after a raw page is committed but before its message is
published, after a load commits but before its item is done and acked, and inside the
transaction that updates the run's status. Either way the run must finish with every
issue present exactly once and equal to the simulator's ground truth, no dead letter and
no message left in any queue.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from etld.config import parse_config
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

ISSUES = sized(1000, 10_000)
REPETITIONS = sized(1, 20)
# Ledger items of a full sync: an extraction and a transform item per issue page of 100,
# plus the metadata steps. The kill comes once a random share of them (up to 60%) is
# done: a moment defined by progress, so a fast machine cannot finish the run first.
EXPECTED_ITEMS = ISSUES // 50 + 10
STUCK_AFTER = 6.0  # the watchdog repairs a run idle this long (never needed so far)


async def _done_at_least(ctl: Controller, count: int) -> bool:
    return await ctl.done_items() >= count


@pytest.mark.parametrize("repetition", range(REPETITIONS))
async def test_r1_sigkill_at_a_random_moment_then_restart(
    repetition: int,
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(1000 + repetition)
    site = await jira_site(aiohttp_server, ISSUES)
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
            await start_watchdog(ctl, raw, STUCK_AFTER)
            target = rng.randint(2, max(3, EXPECTED_ITEMS * 6 // 10))
            await wait_for(lambda: _done_at_least(ctl, target), 120, f"{target} items done")
            done_at_kill = await ctl.done_items()
            assert (await ctl.run_row())["outcome"] == "RUNNING", "the run ended before the kill"
            assert await workers.kill9() == -9
            restarted = time.monotonic()
            await workers.start()
            run = await ctl.wait_for_end(180)
            recovered = time.monotonic() - restarted
            await assert_clean_end(ctl, site, amqp_url, config, workers)
            print(
                f"R1 rep {repetition}: {ISSUES} issues, killed after {done_at_kill} items, "
                f"finished {recovered:.1f} s after the restart, "
                f"watchdog repairs {await ctl.stuck_notes()}, run {run['id']}"
            )
        finally:
            await workers.stop()


CRASH_POINTS = [
    ("page_stored", 3),  # the third raw page: its transform message was never published
    ("load_committed", 5),  # the fifth load: committed, item not done, message not acked
    ("status_update", 8),  # inside the eighth completion's transaction
    ("before_ack", 12),  # a finished handler's message, not acked yet
]


@pytest.mark.parametrize(("point", "count"), CRASH_POINTS, ids=[p for p, _ in CRASH_POINTS])
async def test_r2_crash_at_a_named_point_then_restart(
    point: str,
    count: int,
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = await jira_site(aiohttp_server, sized(400, 2000))
    raw = raw_config(db_url, amqp_url, site.base_url)
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    config = parse_config(raw)
    workers = WorkerProcess(path, tmp_path / "workers.log")
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        try:
            await workers.start(ETLD_CRASH_AT=f"{point}:{count}")
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            await ctl.start_full_sync()
            await start_watchdog(ctl, raw, 3600.0)  # the outbox sweep only, no watchdog
            code = await workers.wait(60)
            assert code == 137, workers.log_text()[-2000:]
            assert f"crash point {point} reached" in workers.log_text()
            assert (await ctl.run_row())["outcome"] == "RUNNING"
            await asyncio.sleep(0.2)
            await workers.start()  # no crash point this time
            run = await ctl.wait_for_end(120)
            await assert_clean_end(ctl, site, amqp_url, config, workers)
            assert await ctl.stuck_notes() == 0  # repaired without the watchdog
            print(f"R2 {point}:{count}: run {run['id']} finished after the crash")
        finally:
            await workers.stop()
