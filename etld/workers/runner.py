"""The runner: decode → validate → handle → ack, retry or dead-letter. One for every queue.

Handlers receive a `Delivery` (the validated message plus its envelope) and a
`HandlerContext` (database pool, publisher, config, logger) and signal their
outcome by returning or raising; they never touch the channel.

Order of effects, so that nothing is acked that was not done:
- success: ack;
- retry: publish a copy (confirmed) to the delay queue, then ack the original;
- dead letter: insert the row in PostgreSQL, copy to etl.failed, then ack.
If a publish fails, the original is not acked: it is nacked back onto its queue
after a pause, or redelivered by the broker when the channel is gone. A
handler cancelled mid-way (shutdown past the grace period, lost connection) is
never acked either. Redelivery can therefore repeat a handler's work, which is
why handlers are idempotent.

A handler that failed because PostgreSQL is away (restarting, failing over) is tried
again without using up an attempt: the message is not at fault, and a restart longer
than the retry schedule must not dead-letter every message in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Mapping
from typing import Any

import aiormq
import asyncpg
import orjson
import structlog

from etld import dlq
from etld.broker.backoff import retry_delay
from etld.broker.publish import PublishError
from etld.broker.topology import DEAD_LETTER_EXCHANGE, RUNNER_DEAD_KEY, Topology
from etld.faults import crash_point
from etld.logs import get_logger
from etld.messages import MESSAGE_CLASSES, STAGE_KINDS, InvalidMessage, Message, parse_message
from etld.telemetry import (
    HANDLER_SECONDS,
    MESSAGES_DEAD_LETTERED,
    MESSAGES_HANDLED,
    MESSAGES_RETRIED,
    tier_label,
)
from etld.workers.errors import Reject, Retry
from etld.workers.handler import Delivery, Handler, HandlerContext

log = get_logger(__name__)

ATTEMPT_HEADER = "x-etld-attempt"
# services key of an async callable(letter, message) run after a dead letter is stored.
ON_DEAD_LETTER = "on_dead_letter"
# Set on a message whose dead letter could not be written to PostgreSQL: it is parked
# in a delay queue and, when it comes back, goes straight to the dead-letter path.
PENDING_DEAD_HEADER = "x-etld-dead-reason"
HEADER_TEXT_LIMIT = 4000
# Pause before handing a message back to its queue when the broker would not take a
# retry or dead-letter copy, so a broker in trouble is not hammered in a tight loop.
REQUEUE_PAUSE = 1.0
_STRIPPED_HEADERS = ("x-death", "x-first-death", "x-last-death")


def _short(text: str | None) -> str | None:
    if text is None or len(text) <= HEADER_TEXT_LIMIT:
        return text
    return text[: HEADER_TEXT_LIMIT - 15] + "...[truncated]"


# Errors that say the database went away, not that the message is bad.
_DATABASE_OUTAGE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
DATABASE_PROBE_SECONDS = 2.0


def int_field(data: object, key: str) -> int | None:
    if isinstance(data, dict):
        value = data.get(key)
        if type(value) is int:
            return value
    return None


def _carried_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers a copy keeps: the broker's dead-letter history is dropped."""
    return {k: v for k, v in headers.items() if not k.startswith(_STRIPPED_HEADERS)}


class Runner:
    """Processes the deliveries of one queue (stage and tier)."""

    def __init__(
        self,
        *,
        stage: str,
        tier: str | None,
        queue: str,
        handler: Handler | None,
        context: HandlerContext,
        topology: Topology,
    ) -> None:
        self.stage = stage
        self.tier = tier
        self.queue = queue
        self.kind = STAGE_KINDS[stage]
        self.handler = handler
        self.context = context
        self.topology = topology
        self.publisher = context.publisher
        self.pool = context.pool
        rabbit = context.config.rabbitmq
        self.max_bytes = rabbit.max_message_bytes
        self.delays = rabbit.retry_delays
        self.jitter = rabbit.retry_jitter
        self.max_retries_by_type = rabbit.max_retries
        self.default_max_retries = rabbit.max_retries.get(stage, 3)
        label = tier_label(tier)
        # Labelled children resolved once: this is the per-message hot path.
        self._handled = MESSAGES_HANDLED.labels(stage, label)
        self._retried = MESSAGES_RETRIED.labels(stage, label)
        self._latency = HANDLER_SECONDS.labels(stage, label)
        self._dead = {
            kind: MESSAGES_DEAD_LETTERED.labels(stage, label, kind)
            for kind in ("malformed", "rejected", "exhausted", "no_handler")
        }

    def max_retries_for(self, message: Message) -> int:
        """A job message's own max_retries; else the config's entry for the message's
        type (`custom_fields: 5`); else the stage's."""
        own = getattr(message, "max_retries", None)
        if own is not None:
            return max(int(own), 1)
        kind = getattr(message, "job_type", None) or getattr(message, "type", None)
        if kind is not None and kind in self.max_retries_by_type:
            return self.max_retries_by_type[kind]
        return self.default_max_retries

    async def process(self, msg: aiormq.abc.DeliveredMessage) -> None:
        properties = msg.header.properties
        headers: Mapping[str, Any] = properties.headers or {}
        attempt = headers.get(ATTEMPT_HEADER, 1)
        if type(attempt) is not int or attempt < 1:
            attempt = 1
        pending = headers.get(PENDING_DEAD_HEADER)
        if pending is not None:
            await self._dead_letter(
                msg, attempt, "exhausted", str(pending), error=headers.get("x-etld-error")
            )
            return
        body = msg.body
        if len(body) > self.max_bytes:
            reason = (
                f"message body is {len(body)} bytes, over the {self.max_bytes}-byte limit "
                "(rabbitmq.max_message_bytes)"
            )
            await self._dead_letter(msg, attempt, "malformed", reason)
            return
        declared = properties.message_type
        if declared is not None and declared != self.kind:
            reason = (
                f"{declared} message does not belong on {self.queue} "
                f"(it takes {self.kind} messages)"
                if declared in MESSAGE_CLASSES
                else f"unknown message type {declared!r}"
            )
            await self._dead_letter(msg, attempt, "malformed", reason)
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await self._dead_letter(msg, attempt, "malformed", f"invalid JSON: {exc}")
            return
        try:
            message = parse_message(self.kind, data)
        except InvalidMessage as exc:
            await self._dead_letter(msg, attempt, "malformed", exc.reason, data=data)
            return
        if self.handler is None:
            reason = f"no handler for stage {self.stage}"
            await self._dead_letter(msg, attempt, "no_handler", reason, data=data)
            return
        max_retries = self.max_retries_for(message)
        delivery = Delivery(
            message=message,
            raw=data,
            attempt=attempt,
            redelivered=bool(msg.redelivered),
            queue=self.queue,
            stage=self.stage,
            tier=self.tier,
            headers=headers,
            message_id=properties.message_id,
            max_retries=max_retries,
        )
        # The task running this delivery has its own context copy, so these stay
        # with this message's log lines only.
        structlog.contextvars.bind_contextvars(
            stage=self.stage,
            tier=self.tier,
            tenant_id=message.tenant_id,
            job_id=getattr(message, "job_id", None),
            message_id=properties.message_id,
        )
        started = time.perf_counter()
        try:
            await self.handler(delivery, self.context)
        except Retry as exc:
            self._latency.observe(time.perf_counter() - started)
            await self._retry(msg, delivery, exc.delay, exc.count, exc.reason or "retry requested")
        except Reject as exc:
            self._latency.observe(time.perf_counter() - started)
            await self._dead_letter(msg, attempt, "rejected", f"rejected: {exc.reason}", data=data)
        except Exception as exc:
            # Broad on purpose: any handler bug is a failed attempt, never a dead consumer.
            # CancelledError is a BaseException and passes through: no ack.
            self._latency.observe(time.perf_counter() - started)
            await self._failed(msg, delivery, exc)
        else:
            self._latency.observe(time.perf_counter() - started)
            crash_point("before_ack")
            await self._ack(msg)
            self._handled.inc()

    # -- outcomes ---------------------------------------------------------------------

    async def _failed(
        self, msg: aiormq.abc.DeliveredMessage, delivery: Delivery, exc: Exception
    ) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if await self._database_outage(exc):
            log.warning(
                "database unavailable, will retry without using an attempt",
                attempt=delivery.attempt,
                error=error,
            )
            await self._retry(msg, delivery, None, False, f"database unavailable: {error}")
            return
        if delivery.attempt >= delivery.max_retries:
            await self._dead_letter(
                msg,
                delivery.attempt,
                "exhausted",
                f"failed after {delivery.attempt} attempts: {error}",
                error=error,
                trace="".join(traceback.format_exception(exc)),
                data=delivery.raw,
            )
            return
        log.warning("handler failed, will retry", attempt=delivery.attempt, error=error)
        await self._retry(msg, delivery, None, True, error)

    async def _database_outage(self, exc: Exception) -> bool:
        """Whether the handler failed because PostgreSQL is unreachable right now.

        asyncpg's connection-level errors say so by themselves. A bare OSError may come
        from anywhere (a source's socket too), so the database is asked before blaming it.
        """
        if isinstance(exc, _DATABASE_OUTAGE):
            return True
        if not isinstance(exc, OSError | asyncpg.InterfaceError):
            return False
        try:
            async with asyncio.timeout(DATABASE_PROBE_SECONDS):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return True
        return False

    async def _retry(
        self,
        msg: aiormq.abc.DeliveredMessage,
        delivery: Delivery,
        delay: float | None,
        count: bool,
        reason: str,
    ) -> None:
        if count and delivery.attempt >= delivery.max_retries:
            await self._dead_letter(
                msg,
                delivery.attempt,
                "exhausted",
                f"retries exhausted after {delivery.attempt} attempts: {reason}",
                error=reason,
                data=delivery.raw,
            )
            return
        if delay is None:
            delay = retry_delay(delivery.attempt, self.delays, self.jitter)
        headers = _carried_headers(delivery.headers)
        headers[ATTEMPT_HEADER] = delivery.attempt + 1 if count else delivery.attempt
        headers["x-etld-last-error"] = _short(reason)
        if await self._park(msg, headers, delay):
            self._retried.inc()

    async def _park(
        self, msg: aiormq.abc.DeliveredMessage, headers: dict[str, Any], delay: float
    ) -> bool:
        """Send a copy through the delay queue for `delay` seconds, then ack the original."""
        exchange, step = self.topology.delay_for(delay)
        # The step's queue TTL is the upper bound; a shorter wait rides on a per-message
        # expiration (which the broker drops when it dead-letters the message back).
        expiration = round(delay * 1000) if delay < step else None
        try:
            await self.publisher.publish_raw(
                msg.body,
                exchange=exchange,
                routing_key=self.queue,
                headers=headers,
                message_type=msg.header.properties.message_type,
                message_id=msg.header.properties.message_id,
                expiration_ms=expiration,
            )
        except PublishError as exc:
            log.warning("cannot park message for retry, requeueing it", error=str(exc))
            await self._requeue_later(msg)
            return False
        await self._ack(msg)
        return True

    async def _dead_letter(
        self,
        msg: aiormq.abc.DeliveredMessage,
        attempt: int,
        kind: str,
        reason: str,
        *,
        error: str | None = None,
        trace: str | None = None,
        data: object = None,
    ) -> None:
        properties = msg.header.properties
        headers: Mapping[str, Any] = properties.headers or {}
        message_type = None
        if isinstance(data, dict):
            message_type = data.get("job_type") or data.get("type")
        letter = dlq.NewDeadLetter(
            queue=self.queue,
            routing_key=msg.routing_key,
            stage=self.stage,
            message_type=str(message_type) if message_type is not None else properties.message_type,
            reason=reason,
            error=error,
            traceback=trace,
            attempts=attempt,
            headers=headers,
            body=msg.body,
            tenant_id=int_field(data, "tenant_id"),
            job_id=int_field(data, "job_id"),
            run_id=int_field(data, "run_id"),
        )
        log.error("message dead-lettered", queue=self.queue, reason=reason, attempts=attempt)
        try:
            dead_id = await dlq.record(self.pool, letter)
        except Exception as exc:
            # PostgreSQL unavailable: park the message and try the dead-letter path again
            # later, rather than keep it only in the capped etl.failed.
            log.error("cannot record dead letter, parking it", error=repr(exc))
            parked = _carried_headers(headers)
            parked[PENDING_DEAD_HEADER] = _short(reason)
            parked["x-etld-error"] = _short(error)
            parked[ATTEMPT_HEADER] = attempt
            await self._park(msg, parked, self.topology.delays[-1])
            return
        await self._notify_dead_letter(letter, data)
        copy = _carried_headers(headers)
        copy.update(
            {
                "x-etld-dead-letter-id": dead_id,
                "x-etld-reason": _short(reason),
                "x-etld-error": _short(error),
                "x-etld-traceback": _short(trace),
                "x-etld-attempts": attempt,
                "x-etld-original-queue": self.queue,
                "x-etld-original-routing-key": msg.routing_key,
            }
        )
        try:
            await self.publisher.publish_raw(
                msg.body,
                exchange=DEAD_LETTER_EXCHANGE,
                routing_key=RUNNER_DEAD_KEY,
                headers=copy,
                message_type=properties.message_type,
                message_id=properties.message_id,
            )
        except PublishError as exc:
            # The row is the record of truth; the etl.failed copy is a convenience.
            log.warning(
                "dead letter stored without its etl.failed copy", id=dead_id, error=str(exc)
            )
        await self._ack(msg)
        self._dead[kind].inc()

    async def _notify_dead_letter(self, letter: dlq.NewDeadLetter, data: object) -> None:
        """Tell the owner of the message's work (the run ledger) that it failed for good.

        The hook is `services["on_dead_letter"]`; its failure must not lose the dead
        letter, which is already stored.
        """
        hook = self.context.services.get(ON_DEAD_LETTER)
        if hook is None or not isinstance(data, dict):
            return
        try:
            await hook(letter, data)
        except Exception as exc:
            log.error("dead-letter hook failed", error=repr(exc), run_id=letter.run_id)

    async def _ack(self, msg: aiormq.abc.DeliveredMessage) -> None:
        await ack(msg)

    async def _requeue_later(self, msg: aiormq.abc.DeliveredMessage) -> None:
        await asyncio.sleep(REQUEUE_PAUSE)
        await nack(msg)


# Errors of acking on a channel that is gone; the broker then redelivers the message.
_CHANNEL_GONE = (aiormq.exceptions.AMQPError, RuntimeError, ConnectionError)


async def ack(msg: aiormq.abc.DeliveredMessage) -> None:
    try:
        await msg.channel.basic_ack(msg.delivery_tag or 0)
    except _CHANNEL_GONE as exc:
        log.info("ack lost with its channel; the message will be redelivered", error=str(exc))


async def nack(msg: aiormq.abc.DeliveredMessage) -> None:
    """Hand the message back to its queue (used when it cannot be handled right now)."""
    with contextlib.suppress(*_CHANNEL_GONE):
        await msg.channel.basic_nack(msg.delivery_tag or 0, requeue=True)
