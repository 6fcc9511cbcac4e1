"""One AMQP connection per daemon, kept alive: heartbeats, reconnect with backoff.

Everything that lives on a connection (topology, publisher channel, consumers)
registers an `on_connect` callback; after a broker restart or a dropped socket
the manager reconnects with capped exponential backoff and runs the callbacks
again in registration order, so topology is re-declared before consumers resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
import yarl

from etld.errors import StartupError, redact_url, url_host
from etld.logs import get_logger
from etld.telemetry import BROKER_RECONNECTS

log = get_logger(__name__)

OnConnect = Callable[[aiormq.abc.AbstractConnection], Awaitable[None]]
_CONNECT_ERRORS = (OSError, TimeoutError, aiormq.exceptions.AMQPError, ConnectionError)


def describe_amqp_failure(url: str, exc: BaseException) -> str:
    reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
    return f"cannot reach RabbitMQ at {url_host(url)} ({redact_url(url)}): {reason}"


class BrokerConnection:
    """Owns the AMQP connection and its recovery loop."""

    def __init__(
        self,
        url: str,
        *,
        heartbeat: int = 30,
        connect_timeout: float = 10.0,
        max_backoff: float = 10.0,
        name: str = "etld",
    ) -> None:
        self.url = url
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.name = name
        self._callbacks: list[OnConnect] = []
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self.reconnects = 0

    # -- public surface -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return (
            self._connection is not None and not self._connection.is_closed and self._ready.is_set()
        )

    @property
    def connection(self) -> aiormq.abc.AbstractConnection:
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("RabbitMQ connection is not open")
        return self._connection

    def on_connect(self, callback: OnConnect) -> None:
        """Run `callback` now (if connected) by the caller, and after every reconnect."""
        self._callbacks.append(callback)

    def remove_callback(self, callback: OnConnect) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def start(self) -> None:
        """First connect: fails fast with a one-line StartupError, no retry loop."""
        try:
            self._connection = await self._open()
        except _CONNECT_ERRORS as exc:
            raise StartupError(describe_amqp_failure(self.url, exc)) from exc
        try:
            await self._run_callbacks(self._connection)
        except aiormq.exceptions.AMQPError as exc:
            # Typically a queue declared earlier with other arguments (PRECONDITION_FAILED).
            await self._connection.close()
            raise StartupError(f"RabbitMQ refused the etld topology: {exc}") from exc
        self._ready.set()
        self._supervisor = asyncio.create_task(self._supervise(), name="amqp-supervisor")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._ready.clear()

    async def channel(
        self, *, publisher_confirms: bool = False, prefetch: int | None = None
    ) -> Any:
        channel = await self.connection.channel(publisher_confirms=publisher_confirms)
        if prefetch is not None:
            await channel.basic_qos(prefetch_count=prefetch)
        return channel

    # -- internals ----------------------------------------------------------------------

    def _stopping(self) -> bool:
        # A method, not the attribute, so type checkers do not assume close() cannot
        # have run while the supervisor awaited.
        return self._closing

    async def _open(self) -> aiormq.abc.AbstractConnection:
        url = yarl.URL(self.url)
        if "heartbeat" not in url.query:
            url = url.update_query(heartbeat=self.heartbeat)
        connection = await asyncio.wait_for(
            aiormq.connect(url, client_properties={"connection_name": self.name}),
            self.connect_timeout,
        )
        return connection

    async def _run_callbacks(self, connection: aiormq.abc.AbstractConnection) -> None:
        for callback in list(self._callbacks):
            await callback(connection)

    async def _supervise(self) -> None:
        while not self._closing:
            connection = self._connection
            assert connection is not None
            try:
                await connection.closing
            except Exception as exc:  # the closing future carries the reason
                reason = str(exc) or type(exc).__name__
            else:
                reason = "closed"
            if self._stopping():
                return
            self._ready.clear()
            log.warning("rabbitmq connection lost", reason=reason)
            await self._reconnect()

    async def _reconnect(self) -> None:
        delay = 0.2
        while not self._closing:
            connection: aiormq.abc.AbstractConnection | None = None
            try:
                connection = await self._open()
                self._connection = connection
                await self._run_callbacks(connection)
            except Exception as exc:
                # Any failure, not only network ones: a callback that raises must not kill
                # the supervisor, or the daemon would stay disconnected for good.
                error = (
                    describe_amqp_failure(self.url, exc)
                    if isinstance(exc, _CONNECT_ERRORS)
                    else f"{type(exc).__name__}: {exc}"
                )
                log.warning("rabbitmq reconnect failed", error=error, retry_in=round(delay, 2))
                if connection is not None and not connection.is_closed:
                    with contextlib.suppress(Exception):
                        await connection.close()
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.max_backoff)
                continue
            self.reconnects += 1
            BROKER_RECONNECTS.inc()
            self._ready.set()
            log.info("rabbitmq reconnected", reconnects=self.reconnects)
            return
