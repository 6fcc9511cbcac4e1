"""Graceful drain through the daemon's phases: nothing acked early, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from etld.config import Config
from etld.daemon import Daemon
from etld.workers import Delivery, HandlerContext
from tests.integration.test_broker_support import (
    extraction,
    publish_json,
    queue_counts,
    quiet_logging,
    running_daemon,
    wait_until,
)

QUEUE = "extraction_queue_free"


@pytest.fixture(autouse=True)
def _logging() -> None:
    quiet_logging()


def drain_config(make_config: Callable[..., Config], grace: float) -> Config:
    return make_config(
        pipeline={"tiers": ["free"]},
        workers={"free": {"extraction": 4}},
        daemon={"grace_period": grace},
    )


async def test_sigterm_lets_running_handlers_finish_and_ack(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    config = drain_config(make_config, grace=10.0)
    release = asyncio.Event()
    started: list[int] = []
    done: list[int] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        started.append(delivery.raw["seq"])
        await release.wait()
        done.append(delivery.raw["seq"])

    daemon = Daemon(config, roles=frozenset({"workers"}))
    daemon.services["handlers"] = {"extraction": handle}
    running = asyncio.create_task(daemon.run(install_signals=True))
    await asyncio.wait_for(daemon.started.wait(), 20)
    await publish_json(amqp_url, QUEUE, [extraction(n) for n in range(10)])
    await wait_until(lambda: len(started) == 4, what="four handlers running")

    os.kill(os.getpid(), signal.SIGTERM)
    # Phase 1: the consumer is cancelled while the handlers still run; nothing acked yet.
    await wait_until(lambda: _consumers(amqp_url, QUEUE, 0), what="the consumer to be cancelled")
    assert done == []
    assert not running.done()
    # Phase 2: the handlers finish within the grace period and their messages are acked.
    release.set()
    assert await asyncio.wait_for(running, 20) == 0
    assert sorted(done) == sorted(started)
    assert len(started) == 4
    ready, consumers = (await queue_counts(amqp_url, QUEUE))[QUEUE]
    assert (ready, consumers) == (6, 0)

    # Nothing done twice in effect: a new daemon gets exactly the six others.
    later: list[int] = []

    async def record(delivery: Delivery, ctx: HandlerContext) -> None:
        later.append(delivery.raw["seq"])

    async with running_daemon(config, {"extraction": record}):
        await wait_until(lambda: len(later) == 6, what="the remaining messages")
    assert sorted(later + done) == list(range(10))


async def test_handlers_past_the_grace_period_are_cancelled_not_acked(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    config = drain_config(make_config, grace=0.3)
    started: list[int] = []
    cancelled: list[int] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        started.append(delivery.raw["seq"])
        try:
            await asyncio.Event().wait()  # never finishes on its own
        except asyncio.CancelledError:
            cancelled.append(delivery.raw["seq"])
            raise

    daemon = Daemon(config, roles=frozenset({"workers"}))
    daemon.services["handlers"] = {"extraction": handle}
    await daemon.start()
    try:
        await publish_json(amqp_url, QUEUE, [extraction(n) for n in range(10)])
        await wait_until(lambda: len(started) == 4, what="four handlers running")
    finally:
        await daemon.shutdown()
    assert sorted(cancelled) == sorted(started)
    # All ten are back in the queue: the four cancelled ones were never acked.
    assert (await queue_counts(amqp_url, QUEUE))[QUEUE] == (10, 0)


async def _consumers(url: str, queue: str, expected: int) -> bool:
    return (await queue_counts(url, queue))[queue][1] == expected
