"""Recovery: dropped connections and a broker restart lose nothing, consumers come back.

The broker restart test stops the shared RabbitMQ application for a few seconds;
it always starts it again, in a finally block.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from etld.broker.publish import Publisher, PublishError
from etld.broker.topology import Topology
from etld.config import Config
from etld.workers import Delivery, HandlerContext
from tests.conftest import rabbitmqctl
from tests.integration.test_broker_support import (
    TcpProxy,
    amqp,
    extraction,
    publish_json,
    queue_counts,
    running_daemon,
    wait_until,
)

QUEUE = "extraction_queue_free"


async def consumers_attached(url: str, config: Config) -> bool:
    names = [spec.name for spec in Topology(config).stage_queues()]
    try:
        counts = await queue_counts(url, *names)
    except Exception:
        return False  # the broker is not back yet
    return all(consumers >= 1 for _, consumers in counts.values())


async def test_dropped_connections_lose_nothing(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    async with TcpProxy(amqp_url) as proxy:
        config = make_config(
            pipeline={"tiers": ["free"]},
            rabbitmq={"url": proxy.url},
            workers={"free": {"extraction": 4}},
        )
        seen: set[int] = set()
        handled = 0
        go = asyncio.Event()

        async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
            nonlocal handled
            await go.wait()
            await asyncio.sleep(0.005)  # some work, so the drops hit handlers mid-flight
            seen.add(delivery.raw["seq"])
            handled += 1

        async with running_daemon(config, {"extraction": handle}) as daemon:
            broker = daemon.broker
            assert broker is not None
            # Published straight to the broker, not through the proxy being cut.
            await publish_json(amqp_url, QUEUE, [extraction(n) for n in range(600)])
            go.set()
            # Each wait ends within its iteration, so the lambdas can read the loop variables.
            for drops, threshold in enumerate((150, 350), start=1):
                await wait_until(lambda: handled >= threshold, what=f"{threshold} handled")  # noqa: B023
                assert len(seen) < 600
                proxy.drop_all()
                await wait_until(lambda: broker.reconnects == drops, what="the reconnect")  # noqa: B023
            await wait_until(lambda: len(seen) == 600, timeout=30, what="every message")
            await wait_until(
                lambda: consumers_attached(amqp_url, config), what="consumers on every queue"
            )
    assert seen == set(range(600))


async def test_broker_restart_during_stream_of_5000(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    total = 5000
    config = make_config(pipeline={"tiers": ["free"]}, workers={"free": {"extraction": 16}})
    seen: set[int] = set()

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        seen.add(delivery.raw["seq"])

    async def produce(publisher: Publisher) -> None:
        """Publish all messages; an unconfirmed one is published again (at-least-once)."""
        for start in range(0, total, 50):
            batch = range(start, min(start + 50, total))
            pending = list(batch)
            while pending:
                results = await asyncio.gather(
                    *(publisher.publish(QUEUE, extraction(n)) for n in pending),
                    return_exceptions=True,
                )
                failed = [
                    n for n, r in zip(pending, results, strict=True) if isinstance(r, PublishError)
                ]
                if failed:
                    await asyncio.sleep(0.2)
                pending = failed

    async with running_daemon(config, {"extraction": handle}) as daemon:
        producer = asyncio.create_task(produce(daemon.services["publisher"]))
        await wait_until(lambda: len(seen) >= 1000, timeout=30, what="1000 handled")
        seen_at_stop = len(seen)
        try:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
        back_at = time.monotonic()
        await wait_until(
            lambda: consumers_attached(amqp_url, config), timeout=30, what="consumers back"
        )
        resumed_after = time.monotonic() - back_at
        await asyncio.wait_for(producer, 60)
        await wait_until(lambda: len(seen) == total, timeout=60, what="every message")
        assert daemon.broker is not None
        assert daemon.broker.reconnects >= 1
    assert seen_at_stop < total
    assert seen == set(range(total))
    assert resumed_after < 30


async def test_consumer_comes_back_after_its_queue_is_deleted(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    config = make_config(pipeline={"tiers": ["free"]})
    seen: list[int] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        seen.append(delivery.raw["seq"])

    async with running_daemon(config, {"extraction": handle}) as daemon:
        async with amqp(amqp_url) as channel:
            await channel.queue_delete(QUEUE)
        # The consumer re-declares the topology and consumes again, same connection.
        await wait_until(lambda: consumers_attached(amqp_url, config), what="the consumer back")
        await daemon.services["publisher"].publish(QUEUE, extraction(1))
        await wait_until(lambda: seen == [1], what="a message on the new queue")
        assert daemon.broker is not None
        assert daemon.broker.reconnects == 0
