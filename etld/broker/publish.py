"""Confirmed publishing: a publish returns only once the broker has taken the message.

Every message is persistent and published with `mandatory`, on a channel in
confirm mode. A connection lost before the confirm means publishing again once
reconnected (at-least-once: the broker may have kept the first copy). A
publish that is not confirmed within `rabbitmq.confirm_timeout` raises
`PublishTimeout`; a broker nack or an unroutable message raises
`PublishRejected`. Nothing fails silently, so callers (the runner, the
scheduler, the dead-letter tools) can leave their source message unacked and
let it come back.

The channel is shared by every publisher in the process: confirms pipeline, so
concurrent publishes do not wait for one another.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiormq
import orjson
from pamqp import commands as spec

from etld.broker.connection import BrokerConnection
from etld.broker.topology import parse_queue, stage_queue
from etld.config import Config
from etld.errors import EtldError
from etld.logs import get_logger
from etld.messages import STAGE_KINDS, Message
from etld.telemetry import PUBLISH_FAILURES, PUBLISHED

log = get_logger(__name__)

PERSISTENT = 2
_UNKNOWN = "?"
LOST_PAUSE = 0.05
# Errors meaning the connection or channel went away, not that the message was refused.
# ChannelInvalidStateError is a RuntimeError.
_LOST = (aiormq.exceptions.AMQPConnectionError, ConnectionError, RuntimeError)


class PublishError(EtldError):
    """The broker did not take the message; it may or may not have arrived."""


class PublishTimeout(PublishError):
    """No confirm within the timeout."""


class PublishRejected(PublishError):
    """The broker refused the message (nack) or could not route it anywhere."""


class MessageTooLarge(PublishError):
    """The encoded message is over `rabbitmq.max_message_bytes`; consumers would refuse it."""


class Publisher:
    """Publishes JSON messages to etld queues with publisher confirms."""

    def __init__(self, broker: BrokerConnection, config: Config) -> None:
        self.broker = broker
        self.config = config
        self.timeout = config.rabbitmq.confirm_timeout
        self.max_bytes = config.rabbitmq.max_message_bytes
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._lock = asyncio.Lock()
        # Per-queue message kind and per-exchange counter, looked up once: publish is hot.
        self._kinds: dict[str, str | None] = {}
        self._published: dict[str, Any] = {}

    async def start(self) -> None:
        """Open the confirm channel now and again after every reconnect."""
        await self._on_connect(self.broker.connection)
        self.broker.on_connect(self._on_connect)

    async def close(self) -> None:
        self.broker.remove_callback(self._on_connect)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()

    def queue_for(self, stage: str, tier: str | None = None) -> str:
        """The queue of `stage` for a tenant on `tier` (`etl.jobs` for the job stage)."""
        if stage != "jobs" and tier not in self.config.pipeline.tiers:
            tiers = ", ".join(self.config.pipeline.tiers)
            raise ValueError(f"unknown tier {tier!r} (pipeline.tiers: {tiers})")
        return stage_queue(stage, tier)

    async def publish(
        self,
        queue: str,
        message: Mapping[str, Any] | Message,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish a message to a queue and wait for the broker's confirm; returns its id."""
        payload = message if isinstance(message, Mapping) else message.to_dict()
        body = orjson.dumps(payload)
        kind = self._kinds.get(queue, _UNKNOWN)
        if kind is _UNKNOWN:
            parsed = parse_queue(queue)
            kind = self._kinds[queue] = STAGE_KINDS[parsed[0]] if parsed else None
        return await self.publish_raw(
            body, routing_key=queue, headers=headers, message_type=kind, message_id=message_id
        )

    async def publish_raw(
        self,
        body: bytes,
        *,
        routing_key: str,
        exchange: str = "",
        headers: Mapping[str, Any] | None = None,
        message_type: str | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        expiration_ms: int | None = None,
        mandatory: bool = True,
        persistent: bool = True,
    ) -> str:
        """Publish bytes as they are (requeue, retries, replies); returns the message id."""
        if len(body) > self.max_bytes:
            raise MessageTooLarge(
                f"message for {routing_key} is {len(body)} bytes, over the "
                f"rabbitmq.max_message_bytes limit of {self.max_bytes}"
            )
        message_id = message_id or os.urandom(16).hex()  # random like uuid4, cheaper
        properties = spec.Basic.Properties(
            content_type="application/json",
            delivery_mode=PERSISTENT if persistent else 1,
            headers=dict(headers) if headers else None,
            message_id=message_id,
            correlation_id=correlation_id,
            reply_to=reply_to,
            message_type=message_type,
            expiration=str(expiration_ms) if expiration_ms is not None else None,
            timestamp=datetime.now(UTC),
        )
        target = exchange or routing_key
        lost: BaseException | None = None
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    try:
                        channel = self._channel
                        if channel is None or channel.is_closed:
                            channel = await self._ready_channel()
                        confirmation = await channel.basic_publish(
                            body,
                            exchange=exchange,
                            routing_key=routing_key,
                            properties=properties,
                            mandatory=mandatory,
                        )
                        break
                    except _LOST as exc:
                        # The connection went away before the confirm: publish again on the
                        # next one. The broker may have taken the first copy, so this is
                        # at-least-once; consumers are idempotent.
                        lost = exc
                        await asyncio.sleep(LOST_PAUSE)
        except TimeoutError:
            why = f" (connection lost: {lost})" if lost is not None else ""
            raise self._failed(
                exchange,
                "timeout",
                PublishTimeout(f"publish to {target} not confirmed within {self.timeout:g} s{why}"),
            ) from None
        except aiormq.exceptions.PublishError:
            raise self._failed(
                exchange, "unroutable", PublishRejected(f"no queue took the message for {target}")
            ) from None
        except aiormq.exceptions.DeliveryError:
            raise self._failed(
                exchange, "nack", PublishRejected(f"the broker refused the message for {target}")
            ) from None
        except aiormq.exceptions.AMQPError as exc:
            # A channel error of our own making, such as an exchange that does not exist.
            reason = str(exc) or type(exc).__name__
            raise self._failed(
                exchange, "error", PublishError(f"publish to {target} failed: {reason}")
            ) from exc
        if not isinstance(confirmation, spec.Basic.Ack):
            raise self._failed(
                exchange, "nack", PublishRejected(f"the broker refused the message for {target}")
            )
        counter = self._published.get(exchange)
        if counter is None:
            counter = self._published[exchange] = PUBLISHED.labels(exchange or "default")
        counter.inc()
        return message_id

    def _failed(self, exchange: str, cause: str, error: PublishError) -> PublishError:
        PUBLISH_FAILURES.labels(exchange or "default", cause).inc()
        return error

    async def _ready_channel(self) -> aiormq.abc.AbstractChannel:
        while True:
            channel = self._channel
            if channel is not None and not channel.is_closed:
                return channel
            if not self.broker.connected:
                # Between a connection loss and the reconnect: wait (the caller's timeout
                # bounds it). The short sleep covers the moment before the supervisor
                # notices the loss, when the ready flag is still set.
                await self.broker.wait_connected()
                await asyncio.sleep(0.05)
                continue
            async with self._lock:
                if self._channel is channel:
                    self._channel = await self.broker.connection.channel(publisher_confirms=True)

    async def _on_connect(self, connection: aiormq.abc.AbstractConnection) -> None:
        # No lock here: a publish waiting for the connection may hold it, and the
        # connection is only marked ready after this callback returns.
        self._channel = await connection.channel(publisher_confirms=True)
