"""Retries and dead letters against the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
import pytest

from etld.broker.publish import Publisher
from etld.config import Config
from etld.dlq import list_dead_letters
from etld.workers import Delivery, HandlerContext, Reject, Retry
from tests.integration.test_broker_support import (
    drain_queue,
    extraction,
    running_daemon,
    wait_until,
)

QUEUE = "extraction_queue_free"


def one_tier(make_config: Callable[..., Config], **rabbitmq: Any) -> Config:
    return make_config(
        pipeline={"tiers": ["free"]},
        rabbitmq={"retry_delays": [0.1, 0.3, 0.9], "retry_jitter": 0.2, **rabbitmq},
    )


async def dead_rows(pool: asyncpg.Pool) -> list[Any]:
    return await list_dead_letters(pool, status=None)


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_always_failing_handler_dead_letters_after_max_retries(
    make_config: Callable[..., Config], pool: asyncpg.Pool, amqp_url: str, queue_type: str
) -> None:
    config = one_tier(make_config, queue_type=queue_type, max_retries={"extraction": 4})
    attempts: list[tuple[int, float]] = []
    good: dict[int, float] = {}

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        seq = delivery.raw["seq"]
        if seq == 0:
            attempts.append((delivery.attempt, time.monotonic()))
            raise RuntimeError("source is down")
        good[seq] = time.monotonic()

    async with running_daemon(config, {"extraction": handle}) as daemon:
        publisher: Publisher = daemon.services["publisher"]
        await publisher.publish(QUEUE, extraction(0))
        for n in range(1, 51):
            await publisher.publish(QUEUE, extraction(n))
        await wait_until(lambda: len(good) == 50, what="the healthy messages")
        await wait_until(lambda: dead_rows(pool), what="the dead letter row")

    assert [a for a, _ in attempts] == [1, 2, 3, 4]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    # Jitter only shortens a delay, by at most 20 %: each gap is at least 80 % of its step.
    for gap, step in zip(gaps, [0.1, 0.3, 0.9], strict=True):
        assert gap >= step * 0.8 - 0.01, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps
    # The other messages were not held up behind the failing one.
    assert max(good.values()) < attempts[-1][1]

    [row] = await dead_rows(pool)
    assert (row.queue, row.routing_key, row.stage) == (QUEUE, QUEUE, "extraction")
    assert (row.attempts, row.status) == (4, "dead")
    assert row.reason == "failed after 4 attempts: RuntimeError: source is down"
    assert row.error == "RuntimeError: source is down"
    assert "source is down" in (row.traceback or "")
    assert orjson.loads(row.body) == extraction(0)
    assert row.tenant_id is None  # tenant 1 does not exist in this database: kept anyway
    assert (row.job_id, row.message_type) == (1, "jira_issues")

    [copy] = await drain_queue(amqp_url, "etl.failed")
    headers = copy.header.properties.headers
    assert headers is not None
    assert orjson.loads(copy.body) == extraction(0)
    assert headers["x-etld-attempts"] == 4
    assert headers["x-etld-reason"] == row.reason
    assert headers["x-etld-error"] == row.error
    traceback = headers["x-etld-traceback"]
    assert isinstance(traceback, str)
    assert "RuntimeError" in traceback
    assert headers["x-etld-original-routing-key"] == QUEUE
    assert headers["x-etld-dead-letter-id"] == row.id


async def test_reject_dead_letters_at_once_and_retry_reruns(
    make_config: Callable[..., Config], pool: asyncpg.Pool
) -> None:
    config = one_tier(make_config)
    seen: list[tuple[int, int]] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        seq = delivery.raw["seq"]
        seen.append((seq, delivery.attempt))
        if seq == 1:
            raise Reject("issue key no longer exists")
        if seq == 2 and delivery.attempt == 1:
            raise Retry(0.05, "rate limited")
        if seq == 3 and delivery.attempt < 3:
            raise Retry(0.05, "slow down", count=False)

    async with running_daemon(config, {"extraction": handle}) as daemon:
        publisher: Publisher = daemon.services["publisher"]
        for n in (1, 2, 3):
            await publisher.publish(QUEUE, extraction(n))
        await wait_until(lambda: (2, 2) in seen, what="the retried message")
        await wait_until(lambda: dead_rows(pool), what="the rejected message")
        # count=False keeps the attempt number: the message comes back as attempt 1 again.
        await wait_until(lambda: seen.count((3, 1)) == 3, what="the uncounted retries")

    [row] = await dead_rows(pool)
    assert row.reason == "rejected: issue key no longer exists"
    assert row.attempts == 1
    assert seen.count((1, 1)) == 1


async def test_retry_past_max_retries_dead_letters(
    make_config: Callable[..., Config], pool: asyncpg.Pool
) -> None:
    config = one_tier(make_config, max_retries={"extraction": 2})

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        raise Retry(0.01, "still not ready")

    async with running_daemon(config, {"extraction": handle}) as daemon:
        await daemon.services["publisher"].publish(QUEUE, extraction(7))
        await wait_until(lambda: dead_rows(pool), what="the dead letter")

    [row] = await dead_rows(pool)
    assert row.reason == "retries exhausted after 2 attempts: still not ready"
    assert row.attempts == 2


async def test_job_message_max_retries_wins(
    make_config: Callable[..., Config], pool: asyncpg.Pool
) -> None:
    config = one_tier(make_config)
    attempts: list[int] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        attempts.append(delivery.attempt)
        raise ValueError("bad job config")

    job = {"job_id": 5, "tenant_id": 1, "integration_id": 2, "job_type": "jira_sync"}
    async with running_daemon(config, {"jobs": handle}) as daemon:
        await daemon.services["publisher"].publish("etl.jobs", {**job, "max_retries": 2})
        await wait_until(lambda: dead_rows(pool), what="the dead job message")

    assert attempts == [1, 2]
    [row] = await dead_rows(pool)
    assert (row.queue, row.message_type, row.job_id) == ("etl.jobs", "jira_sync", 5)
