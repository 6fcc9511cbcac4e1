"""Helpers shared by the broker tests (no tests here): a running daemon, waits, a TCP proxy.

The proxy sits between etld and the real RabbitMQ so a test can drop or stall
the connection of one daemon without restarting the broker everyone shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TextIO, cast

import aiormq
import orjson
import structlog
import yarl

from etld.config import Config
from etld.daemon import Daemon
from etld.logs import configure_logging
from etld.workers import Handler


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time: pytest swaps it for every test."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def quiet_logging() -> None:
    """Log warnings and worse to the current sys.stderr.

    structlog keeps the stream it was configured with, and pytest closes each test's
    capture stream afterwards; writing through `_CurrentStderr` keeps every later test,
    ours or not, from logging into a closed file.
    """
    configure_logging("warning", "console")
    # PrintLogger only writes and flushes: _CurrentStderr is all of TextIO it needs.
    stderr = cast(TextIO, _CurrentStderr())
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stderr))


@contextlib.asynccontextmanager
async def running_daemon(
    config: Config,
    handlers: Mapping[str, Handler] | None = None,
    roles: frozenset[str] = frozenset({"workers"}),
) -> AsyncIterator[Daemon]:
    """A started Daemon (real PostgreSQL and RabbitMQ), shut down through its phases."""
    quiet_logging()
    daemon = Daemon(config, roles=roles)
    if handlers is not None:
        daemon.services["handlers"] = dict(handlers)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.shutdown()


async def wait_until(
    condition: Callable[[], bool | Awaitable[object]],
    timeout: float = 10.0,
    what: str = "condition",
) -> None:
    """Poll a condition (sync or async) until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = bool(await result)
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def amqp(url: str) -> AsyncIterator[aiormq.abc.AbstractChannel]:
    """A plain aiormq channel, for looking at queues from outside etld."""
    connection = await aiormq.connect(url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def queue_counts(url: str, *names: str) -> dict[str, tuple[int, int]]:
    """(ready, consumers) of each queue."""
    out = {}
    async with amqp(url) as channel:
        for name in names:
            ok = await channel.queue_declare(name, passive=True)
            assert ok.message_count is not None
            assert ok.consumer_count is not None
            out[name] = (ok.message_count, ok.consumer_count)
    return out


async def drain_queue(url: str, name: str) -> list[aiormq.abc.DeliveredMessage]:
    """Take every ready message off a queue (acked)."""
    found: list[aiormq.abc.DeliveredMessage] = []
    async with amqp(url) as channel:
        while True:
            msg = await channel.basic_get(name, no_ack=True)
            if msg.delivery_tag is None:
                return found
            found.append(msg)


async def publish_json(
    url: str, queue: str, bodies: list[Any], *, message_type: str | None = None
) -> None:
    """Publish with confirms from a plain client (what another producer would send)."""
    async with amqp(url) as channel:
        for body in bodies:
            raw = body if isinstance(body, bytes) else orjson.dumps(body)
            await channel.basic_publish(
                raw,
                routing_key=queue,
                properties=aiormq.spec.Basic.Properties(delivery_mode=2, message_type=message_type),
            )


def extraction(n: int, **extra: Any) -> dict[str, Any]:
    """A valid extraction message numbered `n` (in `seq`)."""
    return {
        "tenant_id": 1,
        "integration_id": 1,
        "job_id": 1,
        "type": "jira_issues",
        "provider": "jira",
        "last_sync_date": None,
        "first_item": n == 0,
        "last_item": False,
        "last_job_item": False,
        "seq": n,
        **extra,
    }


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the broker; can drop or stall every connection."""

    def __init__(self, target_url: str) -> None:
        target = yarl.URL(target_url)
        self.target_url = target
        self.host, self.port_upstream = target.host or "127.0.0.1", target.port or 5672
        self.server: asyncio.Server | None = None
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.refusing = False
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return str(self.target_url.with_host("127.0.0.1").with_port(port))

    async def __aenter__(self) -> TcpProxy:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.drop_all()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    def drop_all(self) -> None:
        for client, upstream in list(self.links):
            client.transport.abort()
            upstream.transport.abort()
        self.links.clear()

    def stall(self) -> None:
        """Stop forwarding broker → client (the client sees no replies, no confirms)."""
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port_upstream)
        link = (writer, up_writer)
        self.links.add(link)
        for task in (
            asyncio.create_task(self._pump(reader, up_writer, gate=False)),
            asyncio.create_task(self._pump(up_reader, writer, gate=True)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, gate: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if gate:
                    await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
