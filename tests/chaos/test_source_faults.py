"""R6: a hostile or failing source: the client waits or fails cleanly, memory stays bounded.

Against a real `etld run --role workers` process:
- 429 storms, 5xx bursts and responses slower than the client's timeout are waited out
  or retried, and the run still ends equal to the ground truth;
- a truncated or invalid JSON page fails the run with one dead letter naming the call,
  and the process keeps running;
- a 500 MB answer, streamed lazily by the test server (never held in memory), is cut at
  `max_response_bytes`: one dead letter, and the worker's peak RSS stays bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from etld.config import parse_config
from etld.simulator import FaultKind, FaultPlan
from tests.chaos.harness import (
    Controller,
    WorkerProcess,
    assert_clean_end,
    consumers_ready,
    controller,
    jira_site,
    queue_state,
    raw_config,
    start_watchdog,
    to_toml,
    wait_for,
)

SEARCH = "/rest/api/3/search/jql"
MiB = 1024 * 1024
HUGE = 500 * MiB
HTTP = {"timeout": 2.0, "backoff_base": 0.05, "backoff_cap": 0.5, "max_retries": 4}


async def _dead_letters(ctl: Controller) -> list[dict[str, Any]]:
    async with ctl.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM dead_letters ORDER BY id")]


async def test_r6_rate_limit_storms_5xx_bursts_and_timeouts_are_waited_out(
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = FaultPlan(
        seed=5,
        requests_per_second=10_000,
        probabilities={FaultKind.SERVER_ERROR: 0.10, FaultKind.LATENCY: 0.03},
        spike_ms=2500,  # longer than the client's 2 s timeout
        retry_after=1,
    )
    plan.schedule(FaultKind.RATE_LIMIT, count=25, path_prefix=SEARCH, retry_after=1)
    plan.schedule(FaultKind.SERVER_ERROR, count=3, path_prefix="/rest/api/3/", status=502)
    site = await jira_site(aiohttp_server, 600, plan)
    raw = raw_config(db_url, amqp_url, site.base_url, http=HTTP)
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    config = parse_config(raw)
    workers = WorkerProcess(path, tmp_path / "workers.log")
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        try:
            await workers.start()
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            await ctl.start_full_sync()
            await start_watchdog(ctl, raw, 3600.0)
            run = await ctl.wait_for_end(240)
            assert run["outcome"] == "FINISHED", (run["error"], await _dead_letters(ctl))
            assert plan.injected[FaultKind.RATE_LIMIT] >= 25
            assert plan.injected[FaultKind.SERVER_ERROR] >= 3
            peak = workers.rss_bytes("VmHWM")
            await assert_clean_end(ctl, site, amqp_url, config, workers)
            print(f"R6 storms: faults {dict(plan.injected)}, {site.counter.total} calls, "
                  f"peak RSS {peak / MiB:.0f} MiB")  # fmt: skip
        finally:
            await workers.stop()


@pytest.mark.parametrize("kind", [FaultKind.TRUNCATED, FaultKind.INVALID_JSON])
async def test_r6_a_damaged_page_fails_the_run_cleanly(
    kind: FaultKind,
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = FaultPlan(requests_per_second=10_000)
    plan.schedule(kind, count=1, path_prefix=SEARCH)
    site = await jira_site(aiohttp_server, 300, plan)
    raw = raw_config(db_url, amqp_url, site.base_url, http=HTTP)
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    workers = WorkerProcess(path, tmp_path / "workers.log")
    config = parse_config(raw)
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        try:
            await workers.start()
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            await ctl.start_full_sync()
            run = await ctl.wait_for_end(60)
            assert run["outcome"] == "FAILED"
            assert "malformed response to POST" in run["error"]
            letters = await _dead_letters(ctl)
            assert len(letters) == 1
            assert "/search/jql" in letters[0]["reason"]
            assert letters[0]["run_id"] == ctl.run_id
            assert workers.running  # failed cleanly: the process lives on
            assert "Traceback" not in workers.log_text()
        finally:
            await workers.stop()


def huge_search_middleware(served: list[int]) -> Any:
    """Answers the issue search with a never-ending JSON array, written 1 MiB at a time."""
    chunk = b"[" + b'"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",' * (MiB // 33)

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != SEARCH:
            return await handler(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        try:
            while sent < HUGE:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionResetError, RuntimeError):
            pass  # the client hung up at its cap
        finally:
            served.append(sent)
        return response

    return middleware


async def test_r6_a_500_mb_response_is_cut_at_the_cap_with_bounded_memory(
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[int] = []
    site = await jira_site(aiohttp_server, 50, middlewares=(huge_search_middleware(served),))
    raw = raw_config(db_url, amqp_url, site.base_url, http=HTTP)
    path = tmp_path / "etld.toml"
    path.write_text(to_toml(raw))
    workers = WorkerProcess(path, tmp_path / "workers.log")
    config = parse_config(raw)
    async with controller(raw, monkeypatch=monkeypatch) as ctl:
        try:
            await workers.start()
            await wait_for(lambda: consumers_ready(amqp_url, config), 30, "the workers")
            baseline = workers.rss_bytes()
            await ctl.start_full_sync()
            run = await ctl.wait_for_end(120)
            peak = workers.rss_bytes("VmHWM")
            assert run["outcome"] == "FAILED"
            letters = await _dead_letters(ctl)
            assert len(letters) == 1
            assert "limit" in letters[0]["reason"] or "bytes" in letters[0]["reason"]
            assert served  # the server really streamed, and was cut off early
            assert max(served) < HUGE
            assert workers.running
            # The 64 MiB cap plus the process itself; far from 500 MB.
            assert peak < baseline + 200 * MiB, (baseline, peak)
            left = {q: r for q, (r, _) in (await queue_state(amqp_url, config)).items() if r}
            assert set(left) <= {"etl.failed"}
            print(f"R6 500 MB: cut after {max(served) / MiB:.0f} MiB streamed, "
                  f"RSS {baseline / MiB:.0f} MiB idle, peak {peak / MiB:.0f} MiB; "
                  f"dead letter: {letters[0]['reason'][:120]}")  # fmt: skip
        finally:
            await workers.stop()
