"""The RabbitMQ topology, declared in one place and idempotently on every (re)connect.

```
scheduler ─► etl.jobs (TTL 1 h) ──────┐ broker dead-lettering (TTL expiry, rejects)
producers ─► extraction_queue_{tier}  │
             transform_queue_{tier}   ├─► etl.dlx ─"failed"─► etl.failed (24 h, max 1000)
             embedding_queue_{tier}   │            "failed"─► etl.failed.record ─► dead_letters
failed attempt ─► etl.delay.{d} (fanout exchange → queue with TTL d)
                   └─ expires into the default exchange ─► back to its original queue
out of attempts ─► dead_letters (PostgreSQL), then etl.dlx ─"dead"─► etl.failed
etld CLI ─► etl.control (fanout) ─► one exclusive queue per running daemon
```

Retries use one delay queue per step of `rabbitmq.retry_delays`. A message is
published to the step's fanout exchange with its original queue as routing key;
the queue holds it for the step's TTL, then dead-letters it into the default
exchange, which routes by that routing key back to the original queue. No
broker plugin is needed and the attempt count travels in a header, so it does
not depend on any broker version's delivery-limit rules.

Delay queues are named after their delay (`etl.delay.5s`): changing the
schedule declares new queues instead of clashing with the old arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiormq

from etld.config import STAGES, Config

JOBS_QUEUE = "etl.jobs"
DEAD_LETTER_EXCHANGE = "etl.dlx"
FAILED_QUEUE = "etl.failed"
# Copies of what the broker itself dead-letters (expired or rejected messages), so the
# daemon can record them in PostgreSQL like the runner's own dead letters.
FAILED_RECORD_QUEUE = "etl.failed.record"
CONTROL_EXCHANGE = "etl.control"
# The reference's routing key: what queues dead-letter with on their own.
BROKER_DEAD_KEY = "failed"
# What the runner publishes with after recording the dead letter itself; routed to
# etl.failed only, so the recorder does not write the row twice.
RUNNER_DEAD_KEY = "dead"

JOBS_TTL_MS = 3_600_000
FAILED_TTL_MS = 86_400_000
FAILED_MAX_LENGTH = 1000

# Stage name → the message kind its queue carries (see etld.messages).
ALL_STAGES = ("jobs", *STAGES)


def stage_queue(stage: str, tier: str | None = None) -> str:
    """The queue name of a stage: `etl.jobs`, or `{stage}_queue_{tier}`."""
    if stage == "jobs":
        return JOBS_QUEUE
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (expected one of {', '.join(ALL_STAGES)})")
    if not tier:
        raise ValueError(f"stage {stage!r} needs a tier")
    return f"{stage}_queue_{tier}"


def parse_queue(name: str) -> tuple[str, str | None] | None:
    """(stage, tier) of an etld stage queue name, or None for any other queue."""
    if name == JOBS_QUEUE:
        return ("jobs", None)
    for stage in STAGES:
        prefix = f"{stage}_queue_"
        if name.startswith(prefix) and len(name) > len(prefix):
            return (stage, name[len(prefix) :])
    return None


def delay_name(seconds: float) -> str:
    """`etl.delay.5s`, `etl.delay.2m`, `etl.delay.50ms`: readable in the management UI."""
    ms = round(seconds * 1000)
    if ms % 60_000 == 0:
        return f"etl.delay.{ms // 60_000}m"
    if ms % 1000 == 0:
        return f"etl.delay.{ms // 1000}s"
    return f"etl.delay.{ms}ms"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    tier: str | None = None


class Topology:
    """Every exchange, queue and binding etld uses, for one Config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.queue_type = config.rabbitmq.queue_type
        self.delays: tuple[float, ...] = tuple(sorted(set(config.rabbitmq.retry_delays)))

    def _typed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # Classic is the broker's default; leaving the argument out keeps queues declared
        # by older tools equivalent.
        if self.queue_type == "classic":
            return arguments
        return {**arguments, "x-queue-type": self.queue_type}

    def stage_queues(self) -> Iterator[QueueSpec]:
        dead_letter = {
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": BROKER_DEAD_KEY,
        }
        yield QueueSpec(
            JOBS_QUEUE, self._typed({"x-message-ttl": JOBS_TTL_MS, **dead_letter}), "jobs", None
        )
        for tier in self.config.pipeline.tiers:
            for stage in STAGES:
                yield QueueSpec(stage_queue(stage, tier), self._typed(dead_letter), stage, tier)

    def delay_queues(self) -> Iterator[QueueSpec]:
        for seconds in self.delays:
            arguments = {"x-message-ttl": round(seconds * 1000), "x-dead-letter-exchange": ""}
            yield QueueSpec(delay_name(seconds), self._typed(arguments))

    def failed_queues(self) -> Iterator[QueueSpec]:
        yield QueueSpec(
            FAILED_QUEUE,
            self._typed({"x-message-ttl": FAILED_TTL_MS, "x-max-length": FAILED_MAX_LENGTH}),
        )
        yield QueueSpec(FAILED_RECORD_QUEUE, self._typed({}))

    def all_queues(self) -> list[QueueSpec]:
        return [*self.stage_queues(), *self.delay_queues(), *self.failed_queues()]

    def delay_for(self, seconds: float) -> tuple[str, float]:
        """The delay step to use for a wait of `seconds`: (exchange name, step seconds).

        The smallest step that is not shorter than the wait; the longest step when the
        wait exceeds them all (the schedule's cap).
        """
        for step in self.delays:
            if step >= seconds:
                return delay_name(step), step
        step = self.delays[-1]
        return delay_name(step), step

    async def declare(self, connection: aiormq.abc.AbstractConnection) -> None:
        """Declare everything; safe to repeat. Used as a BrokerConnection on_connect callback."""
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.exchange_declare(
                DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True
            )
            await channel.exchange_declare(CONTROL_EXCHANGE, exchange_type="fanout", durable=True)
            for spec in self.all_queues():
                await channel.queue_declare(spec.name, durable=True, arguments=spec.arguments)
            for key in (BROKER_DEAD_KEY, RUNNER_DEAD_KEY):
                await channel.queue_bind(FAILED_QUEUE, DEAD_LETTER_EXCHANGE, routing_key=key)
            await channel.queue_bind(
                FAILED_RECORD_QUEUE, DEAD_LETTER_EXCHANGE, routing_key=BROKER_DEAD_KEY
            )
            for spec in self.delay_queues():
                # Exchange and queue share the name; the exchange is fanout so the
                # routing key (the original queue) survives untouched into the queue.
                await channel.exchange_declare(spec.name, exchange_type="fanout", durable=True)
                await channel.queue_bind(spec.name, spec.name)
        finally:
            await channel.close()
