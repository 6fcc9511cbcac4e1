"""R3: every message delivered twice, one in ten late and out of order.

The workers' publisher is wrapped: each stage message is published twice, and one in ten
is held back for a random while (both copies) so it arrives after messages published
later. A full sync, an incremental sync after the site changed, and a re-transform of
every stored page (pages of both runs, replayed and delivered out of order) must each end
FINISHED and equal the ground truth: no duplicate rows and older data never overwriting
newer.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from etld.config import parse_config
from etld.daemon import Daemon
from etld.sync import SyncReport, SyncRequest, run_sync
from tests.chaos.harness import (
    TOKEN,
    TOKEN_ENV,
    jira_site,
    queue_state,
    raw_config,
    sized,
    wait_for,
)
from tests.e2e.test_jira_e2e import assert_ground_truth


class ChaoticPublisher:
    """Publishes every stage message twice; a share of them late, after a random delay."""

    def __init__(self, inner: Any, late_share: float, seed: int = 3) -> None:
        self.inner = inner
        self.late_share = late_share
        self.rng = random.Random(seed)
        self.copies = 0
        self.late = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, queue: str, message: dict[str, Any], **kwargs: Any) -> Any:
        if queue == "etl.jobs":
            return await self.inner.publish(queue, message, **kwargs)
        if self.rng.random() < self.late_share:
            self.late += 1
            task = asyncio.create_task(self._later(self.rng.uniform(0.05, 1.5), queue, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return None
        result = await self.inner.publish(queue, message, **kwargs)
        await self.inner.publish(queue, message, **kwargs)
        self.copies += 2
        return result

    async def _later(self, delay: float, queue: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        await self.inner.publish(queue, message)
        await self.inner.publish(queue, message)
        self.copies += 2

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks))


@pytest.fixture
async def quiet() -> AsyncIterator[None]:
    with capture_logs():
        yield


async def test_r3_duplicates_and_out_of_order_deliveries(
    db_url: str,
    amqp_url: str,
    aiohttp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    quiet: None,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    site = await jira_site(aiohttp_server, sized(500, 3000))
    raw = raw_config(db_url, amqp_url, site.base_url, consumers=8)
    raw["logging"] = {"level": "warning", "format": "console"}
    config = parse_config(raw)
    daemon = Daemon(config, frozenset({"workers"}))
    await daemon.start()
    try:
        assert daemon.pool is not None
        runs = daemon.services["runs"]
        chaotic = ChaoticPublisher(runs.publisher, late_share=0.10)
        runs.publisher = chaotic

        async def sync(**options: Any) -> SyncReport:
            request = SyncRequest("acme", "jira", timeout=120, **options)
            report = await run_sync(config, request, say=lambda _: None, daemon=daemon)
            assert report.outcome == "FINISHED", (report.error, report.dead_letters)
            assert report.dead_letters == []
            return report

        await sync(full=True)
        await assert_ground_truth(daemon.pool, site.site)

        touched = site.site.issue_keys()[::7][:40]
        site.site.touch(touched, transition=True)
        await sync()
        await assert_ground_truth(daemon.pool, site.site)

        # Every stored page of both runs again, older ones included, in a shuffled order.
        await sync(retransform=True)
        await assert_ground_truth(daemon.pool, site.site)
        await chaotic.flush()
        assert chaotic.late > 5
        assert chaotic.copies > 100

        async def drained() -> bool:
            state = await queue_state(amqp_url, config)
            return all(ready == 0 for ready, _ in state.values())

        await wait_for(drained, 60, "the queues to drain")
        await assert_ground_truth(daemon.pool, site.site)  # late copies changed nothing
        async with daemon.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
            total, distinct = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT external_id) FROM work_items"
            )
        assert total == distinct == len(list(site.site.issues()))
        print(f"R3: {chaotic.copies} copies published, {chaotic.late} messages late")
    finally:
        await daemon.shutdown()
