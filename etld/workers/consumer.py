"""One queue's consumer: a channel of its own whose prefetch is the queue's concurrency.

aiormq runs every delivery in a task of its own, so the number of handlers
running at once equals the number of unacked deliveries, which the broker caps
at the prefetch count: prefetch *is* the concurrency bound, with no semaphore
to keep in step with it.

States: `consuming` → (`restarting` → `consuming`) → `stopped`. A channel the
broker closes while the connection stays up (a channel error) is reopened after
a pause; a lost connection is handled by the pool's on_connect callback, which
calls `attach` again with the new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq

from etld.broker.connection import BrokerConnection
from etld.logs import get_logger
from etld.telemetry import MESSAGES_IN_FLIGHT, tier_label

log = get_logger(__name__)

Process = Callable[[aiormq.abc.DeliveredMessage], Awaitable[None]]
# Re-declares what the consumer needs (the topology) before it consumes again after
# the broker cancelled it or closed its channel: the queue may have been deleted.
Prepare = Callable[[aiormq.abc.AbstractConnection], Awaitable[None]]
CANCEL_TIMEOUT = 5.0
REOPEN_DELAY = 1.0


class StageConsumer:
    def __init__(
        self,
        *,
        broker: BrokerConnection,
        queue: str,
        stage: str,
        tier: str | None,
        concurrency: int,
        process: Process,
        prepare: Prepare | None = None,
    ) -> None:
        self.broker = broker
        self.prepare = prepare
        self.queue = queue
        self.stage = stage
        self.tier = tier
        self.concurrency = concurrency
        self.process = process
        self.state = "idle"
        self.channel: aiormq.abc.AbstractChannel | None = None
        self.consumer_tag: str | None = None
        self.inflight: set[asyncio.Task[Any]] = set()
        self.restarts = 0
        # Deliveries settled by this consumer since the daemon started (acked, retried or
        # dead-lettered): with several daemons on one queue, it shows each one's share.
        self.processed = 0
        self._lock = asyncio.Lock()
        self._reopen: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._gauge = MESSAGES_IN_FLIGHT.labels(stage, tier_label(tier))

    @property
    def attached(self) -> bool:
        return (
            self.channel is not None
            and not self.channel.is_closed
            and self.consumer_tag is not None
        )

    def sample(self) -> None:
        """Refresh the in-flight gauge (sampled rather than updated per message)."""
        self._gauge.set(len(self.inflight))

    def status(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "tier": self.tier,
            "queue": self.queue,
            "concurrency": self.concurrency,
            "state": self.state if self.attached or self.state != "consuming" else "reconnecting",
            "in_flight": len(self.inflight),
            "restarts": self.restarts,
            "processed": self.processed,
        }

    # -- attach / detach ----------------------------------------------------------------

    async def attach(self, connection: aiormq.abc.AbstractConnection) -> None:
        """Start consuming on `connection` unless already attached, stopped or restarting."""
        async with self._lock:
            if self.state in ("stopped", "restarting"):
                return
            await self._attach(connection)

    async def _attach(self, connection: aiormq.abc.AbstractConnection) -> None:
        if self.attached:
            assert self.channel is not None
            if self.channel.connection is connection:
                return
        channel = await connection.channel(publisher_confirms=False)
        await channel.basic_qos(prefetch_count=self.concurrency)
        ok = await channel.basic_consume(self.queue, self._deliver)
        self.channel, self.consumer_tag = channel, ok.consumer_tag
        self.state = "consuming"
        channel.closing.add_done_callback(lambda _: self._channel_closed(channel))
        channel.on_consumer_cancel_callbacks.add(lambda _: self._cancelled_by_broker(channel))

    def _cancelled_by_broker(self, channel: aiormq.abc.AbstractChannel) -> None:
        # The queue was deleted (or its leader moved): close the channel so the reopen
        # path declares the topology again and consumes afresh.
        log.warning("consumer cancelled by the broker", queue=self.queue)
        if channel is self.channel and not channel.is_closed:
            self._closer = asyncio.create_task(channel.close())

    def _channel_closed(self, channel: aiormq.abc.AbstractChannel) -> None:
        if channel is not self.channel or self.state != "consuming":
            return
        if self.broker.connected and (self._reopen is None or self._reopen.done()):
            self._reopen = asyncio.create_task(self._reopen_channel())

    async def _reopen_channel(self) -> None:
        """The broker closed our channel but not the connection: consume again after a pause."""
        delay = REOPEN_DELAY
        while self.state == "consuming" and not self.attached and self.broker.connected:
            await asyncio.sleep(delay)
            try:
                if self.prepare is not None:
                    await self.prepare(self.broker.connection)
                await self.attach(self.broker.connection)
            except Exception as exc:
                log.warning("cannot reopen consumer channel", queue=self.queue, error=repr(exc))
                delay = min(delay * 2, 10.0)
            else:
                log.info("consumer channel reopened", queue=self.queue)

    async def _cancel_consumer(self) -> None:
        channel, tag = self.channel, self.consumer_tag
        self.consumer_tag = None
        if channel is None or channel.is_closed or tag is None:
            return
        try:
            await channel.basic_cancel(tag, timeout=CANCEL_TIMEOUT)
        except (aiormq.exceptions.AMQPError, RuntimeError, ConnectionError, TimeoutError) as exc:
            # A dead channel delivers nothing more anyway.
            log.debug("consumer cancel failed", queue=self.queue, error=repr(exc))

    # -- deliveries ---------------------------------------------------------------------

    async def _deliver(self, msg: aiormq.abc.DeliveredMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            await self.process(msg)
            self.processed += 1
        finally:
            self.inflight.discard(task)

    async def wait_idle(self) -> None:
        """Return once no delivery is being handled. Never cancels the handlers."""
        while self.inflight:
            await asyncio.wait(list(self.inflight))

    # -- lifecycle ----------------------------------------------------------------------

    async def stop(self) -> None:
        """Phase 1 of shutdown: no new deliveries; the in-flight ones carry on."""
        async with self._lock:
            self.state = "stopped"
            if self._reopen is not None:
                self._reopen.cancel()
            await self._cancel_consumer()

    async def restart(self) -> None:
        """Cancel, let in-flight handlers finish and ack, then consume on a fresh channel."""
        async with self._lock:
            if self.state == "stopped":
                return
            self.state = "restarting"
            await self._cancel_consumer()
        await self.wait_idle()
        async with self._lock:
            if self.state != "restarting":
                return  # stopped meanwhile
            await self._close_channel()
            self.state = "consuming"
            self.restarts += 1
            if self.broker.connected:
                await self._attach(self.broker.connection)
            # Otherwise the pool's on_connect callback attaches us after the reconnect.

    async def close(self) -> None:
        """Phase 3: cancel handlers still running (their messages go back to the queue
        unacked when the channel closes), then close the channel."""
        self.state = "stopped"
        for task in list(self.inflight):
            task.cancel()
        if self.inflight:
            await asyncio.wait(list(self.inflight))
        await self._close_channel()

    async def _close_channel(self) -> None:
        channel, self.channel = self.channel, None
        self.consumer_tag = None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
