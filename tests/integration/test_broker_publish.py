"""Confirmed publishing: nothing fails silently."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from etld.broker.publish import MessageTooLarge, PublishRejected, PublishTimeout
from etld.broker.session import broker_session
from etld.config import Config
from tests.integration.test_broker_support import (
    TcpProxy,
    drain_queue,
    extraction,
    queue_counts,
    quiet_logging,
)

QUEUE = "extraction_queue_free"


@pytest.fixture(autouse=True)
def _logging() -> None:
    quiet_logging()


async def test_publish_is_confirmed_and_persistent(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    config = make_config(pipeline={"tiers": ["free"]})
    async with broker_session(config) as (_, publisher):
        assert publisher.queue_for("extraction", "free") == QUEUE
        assert publisher.queue_for("jobs") == "etl.jobs"
        with pytest.raises(ValueError, match="unknown tier 'gold'"):
            publisher.queue_for("extraction", "gold")
        message_id = await publisher.publish(QUEUE, extraction(1), headers={"x-trace": "abc"})
    [msg] = await drain_queue(amqp_url, QUEUE)
    properties = msg.header.properties
    headers = properties.headers
    assert headers is not None
    assert (properties.delivery_mode, properties.message_type) == (2, "extraction")
    assert (properties.message_id, headers["x-trace"]) == (message_id, "abc")


async def test_unroutable_and_oversized_publishes_raise(make_config: Callable[..., Config]) -> None:
    config = make_config(rabbitmq={"max_message_bytes": 1024})
    async with broker_session(config) as (_, publisher):
        with pytest.raises(PublishRejected, match="no queue took the message for nowhere"):
            await publisher.publish("nowhere", {"a": 1})
        with pytest.raises(MessageTooLarge, match=r"over the rabbitmq\.max_message_bytes limit"):
            await publisher.publish(QUEUE, {"blob": "x" * 2000})
        # The channel is still usable after both.
        await publisher.publish(QUEUE, extraction(2))


async def test_unconfirmed_publish_times_out(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    async with TcpProxy(amqp_url) as proxy:
        config = make_config(rabbitmq={"url": proxy.url, "confirm_timeout": 0.5})
        async with broker_session(config) as (_, publisher):
            proxy.stall()  # the broker's confirm never reaches us
            started = time.monotonic()
            with pytest.raises(PublishTimeout, match=r"not confirmed within 0\.5 s"):
                await publisher.publish(QUEUE, extraction(3))
            assert 0.45 < time.monotonic() - started < 2.0
            proxy.resume()


async def test_publish_waits_for_reconnect(
    make_config: Callable[..., Config], amqp_url: str
) -> None:
    async with TcpProxy(amqp_url) as proxy:
        config = make_config(rabbitmq={"url": proxy.url, "confirm_timeout": 10.0})
        async with broker_session(config) as (broker, publisher):
            proxy.drop_all()
            await publisher.publish(QUEUE, extraction(4))
            assert broker.reconnects == 1
    assert (await queue_counts(amqp_url, QUEUE))[QUEUE][0] == 1
