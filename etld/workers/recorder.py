"""Records what the broker dead-letters on its own into `dead_letters`.

The runner writes a row for every message it gives up on. The broker also
dead-letters by itself: a job that waited in `etl.jobs` past its one-hour TTL,
or a message a consumer rejected. Those land in `etl.failed` directly and, as
a copy, in `etl.failed.record`, which this consumer drains into PostgreSQL so
that they too survive etl.failed's 1000-message cap and can be requeued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiormq
import asyncpg
import orjson

from etld import dlq
from etld.broker.topology import parse_queue
from etld.logs import get_logger
from etld.telemetry import MESSAGES_DEAD_LETTERED, tier_label
from etld.workers.runner import ATTEMPT_HEADER, REQUEUE_PAUSE, ack, int_field, nack

log = get_logger(__name__)


def _first_death(headers: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(queue, reason, routing key) of the first time the broker dead-lettered it."""
    deaths = headers.get("x-death")
    entry: Mapping[str, Any] = deaths[0] if isinstance(deaths, list) and deaths else {}
    queue = headers.get("x-first-death-queue") or entry.get("queue") or "unknown"
    reason = headers.get("x-first-death-reason") or entry.get("reason") or "unknown"
    keys = entry.get("routing-keys")
    routing_key = keys[0] if isinstance(keys, list) and keys else None
    return str(queue), str(reason), str(routing_key) if routing_key is not None else None


class BrokerDeadLetterRecorder:
    """The `process` callback of the etl.failed.record consumer."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def process(self, msg: aiormq.abc.DeliveredMessage) -> None:
        headers: Mapping[str, Any] = msg.header.properties.headers or {}
        queue, why, routing_key = _first_death(headers)
        parsed = parse_queue(queue)
        stage, tier = parsed if parsed else (None, None)
        try:
            data = orjson.loads(msg.body)
        except orjson.JSONDecodeError:
            data = None
        fields = data if isinstance(data, dict) else {}
        message_type = fields.get("job_type") or fields.get("type")
        attempt = headers.get(ATTEMPT_HEADER, 1)
        letter = dlq.NewDeadLetter(
            queue=queue,
            routing_key=routing_key,
            stage=stage,
            message_type=message_type or msg.header.properties.message_type,
            reason=f"dead-lettered by the broker ({why}) from {queue}",
            attempts=attempt if type(attempt) is int else 1,
            headers=headers,
            body=msg.body,
            tenant_id=int_field(data, "tenant_id"),
            job_id=int_field(data, "job_id"),
            run_id=int_field(data, "run_id"),
        )
        try:
            dead_id = await dlq.record(self.pool, letter)
        except Exception as exc:
            log.error("cannot record broker dead letter, will retry", error=repr(exc))
            await asyncio.sleep(REQUEUE_PAUSE)
            await nack(msg)
            return
        log.warning("broker dead letter recorded", id=dead_id, queue=queue, reason=why)
        MESSAGES_DEAD_LETTERED.labels(stage or "unknown", tier_label(tier), "broker").inc()
        # If this ack is lost the copy is recorded again: a duplicate row beats a lost one.
        await ack(msg)
