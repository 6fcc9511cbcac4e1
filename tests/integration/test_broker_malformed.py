"""Malformed input is dead-lettered at once with a reason naming the problem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from etld.config import Config
from etld.dlq import list_dead_letters
from etld.workers import Delivery, HandlerContext
from tests.integration.test_broker_support import (
    extraction,
    publish_json,
    running_daemon,
    wait_until,
)

QUEUE = "extraction_queue_free"

# (body, AMQP type property, expected reason)
CASES: list[tuple[bytes, str | None, str]] = [
    (b'{"tenant_id": 1,', None, "invalid JSON: "),
    (b"\xff\xfe not utf-8", None, "invalid JSON: "),
    (orjson.dumps([1, 2, 3]), None, "message body must be a JSON object, got array"),
    (orjson.dumps(extraction(1)), "bogus", "unknown message type 'bogus'"),
    (
        orjson.dumps(extraction(2)),
        "embedding",
        "embedding message does not belong on extraction_queue_free",
    ),
    (
        orjson.dumps({k: v for k, v in extraction(3).items() if k != "job_id"}),
        None,
        "extraction message is missing field 'job_id'",
    ),
    (
        orjson.dumps({"tenant_id": 1, "seq": 4}),
        None,
        "extraction message is missing fields 'integration_id', 'job_id', 'type', 'provider', "
        "'first_item', 'last_item', 'last_job_item'",
    ),
    (
        orjson.dumps(extraction(5, tenant_id="1")),
        None,
        "field 'tenant_id' must be a positive integer, got string",
    ),
    (
        orjson.dumps(extraction(6, first_item="yes")),
        None,
        "field 'first_item' must be true or false, got string",
    ),
    (
        orjson.dumps(extraction(7, last_sync_date="last tuesday")),
        None,
        "field 'last_sync_date' must be an ISO-8601 timestamp, got 'last tuesday'",
    ),
    (
        orjson.dumps(extraction(8, blob="x" * 3000)),
        None,
        "message body is ",
    ),
]


async def test_each_kind_of_malformed_body_is_dead_lettered_with_its_reason(
    make_config: Callable[..., Config], pool: asyncpg.Pool, amqp_url: str
) -> None:
    config = make_config(pipeline={"tiers": ["free"]}, rabbitmq={"max_message_bytes": 2048})
    handled: list[Any] = []

    async def handle(delivery: Delivery, ctx: HandlerContext) -> None:
        handled.append(delivery.raw["seq"])

    async with running_daemon(config, {"extraction": handle}):
        for body, message_type, _ in CASES:
            await publish_json(amqp_url, QUEUE, [body], message_type=message_type)
        # The consumer is still alive after all of that: a good message goes through.
        await publish_json(amqp_url, QUEUE, [extraction(99)])
        await wait_until(lambda: handled == [99], what="the valid message")

        async def all_dead() -> bool:
            return len(await list_dead_letters(pool)) == len(CASES)

        await wait_until(all_dead, what="every malformed message in dead_letters")

    rows = {row.body: row for row in await list_dead_letters(pool)}
    for body, _, reason in CASES:
        row = rows[body]
        assert row.reason.startswith(reason), (row.reason, reason)
        assert (row.attempts, row.queue, row.stage) == (1, QUEUE, "extraction")
    oversized = rows[CASES[-1][0]]
    assert "over the 2048-byte limit" in oversized.reason


async def test_stage_without_handler_dead_letters(
    make_config: Callable[..., Config], pool: asyncpg.Pool
) -> None:
    config = make_config(pipeline={"tiers": ["free"]})
    embedding = {
        "tenant_id": 1,
        "table_name": "work_items",
        "external_id": "PROJ-1",
        "operation": "insert",
        "job_id": 3,
        "first_item": True,
        "last_item": True,
        "last_job_item": True,
    }
    async with running_daemon(config, {}) as daemon:
        await daemon.services["publisher"].publish("embedding_queue_free", embedding)

        async def dead() -> bool:
            return bool(await list_dead_letters(pool))

        await wait_until(dead, what="the dead letter")
    [row] = await list_dead_letters(pool)
    assert row.reason == "no handler for stage embedding"
    assert row.job_id == 3
