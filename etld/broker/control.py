"""Worker control across hosts: the `etl.control` fanout exchange.

Every running daemon with the workers role binds an exclusive, auto-delete
queue to `etl.control` (it disappears with the daemon), so one command from the
CLI reaches all of them wherever they run. Commands are JSON objects:

    {"command": "status"}
    {"command": "restart", "stage": "extraction" | null, "tier": "premium" | null}

A command with `reply_to` gets replies on that queue, matched by
`correlation_id`: first `{"phase": "accepted", "daemon": ...}` at once, then the
result (`"phase": "done"`). The sender counts the daemons from the accepted
replies, so it waits for exactly those results and no fixed time longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
import orjson

from etld.broker.connection import BrokerConnection
from etld.broker.publish import Publisher, PublishError, PublishRejected
from etld.broker.topology import CONTROL_EXCHANGE
from etld.logs import get_logger

log = get_logger(__name__)

CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NoDaemons(Exception):
    """No running daemon listens on etl.control."""


def daemon_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ControlListener:
    """A daemon's end: consumes etl.control and answers through the publisher."""

    def __init__(
        self, broker: BrokerConnection, publisher: Publisher, handle: CommandHandler
    ) -> None:
        self.broker = broker
        self.publisher = publisher
        self.handle = handle
        self.identity = daemon_identity()
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._attach(self.broker.connection)
        self.broker.on_connect(self._attach)

    async def close(self) -> None:
        self.broker.remove_callback(self._attach)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _attach(self, connection: aiormq.abc.AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=False)
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        assert declared.queue is not None  # the broker names it
        await channel.queue_bind(declared.queue, CONTROL_EXCHANGE)
        await channel.basic_consume(declared.queue, self._on_message, no_ack=True)
        self._channel = channel

    async def _on_message(self, msg: aiormq.abc.DeliveredMessage) -> None:
        try:
            command = orjson.loads(msg.body)
        except orjson.JSONDecodeError:
            log.warning("ignoring control message that is not JSON")
            return
        if not isinstance(command, dict):
            return
        reply_to = msg.header.properties.reply_to
        correlation_id = msg.header.properties.correlation_id
        # Answered in its own task: a restart waits for in-flight handlers, and the
        # control consumer must stay free for the next command meanwhile.
        task = asyncio.create_task(self._run(command, reply_to, correlation_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, command: dict[str, Any], reply_to: str | None, correlation_id: str | None
    ) -> None:
        await self._reply(reply_to, correlation_id, {"phase": "accepted"})
        try:
            result = await self.handle(command)
        except Exception as exc:
            log.error("control command failed", command=command.get("command"), error=repr(exc))
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        await self._reply(reply_to, correlation_id, {"phase": "done", **result})

    async def _reply(
        self, reply_to: str | None, correlation_id: str | None, body: dict[str, Any]
    ) -> None:
        if not reply_to:
            return
        with contextlib.suppress(PublishError):  # the sender gave up and its queue is gone
            await self.publisher.publish_raw(
                orjson.dumps({"daemon": self.identity, **body}),
                routing_key=reply_to,
                correlation_id=correlation_id,
                persistent=False,
            )


async def broadcast(
    broker: BrokerConnection,
    publisher: Publisher,
    command: dict[str, Any],
    *,
    timeout: float = 30.0,
    gather_window: float = 1.0,
) -> list[dict[str, Any]]:
    """Send a command to every daemon and return their results (`phase: done`).

    Daemons that accepted but did not finish within `timeout` appear with
    `{"ok": false, "error": "no result within ..."}`. Raises NoDaemons when none
    is listening.
    """
    channel = await broker.connection.channel(publisher_confirms=False)
    correlation_id = uuid.uuid4().hex
    accepted: set[str] = set()
    results: dict[str, dict[str, Any]] = {}
    changed = asyncio.Event()

    async def on_reply(msg: aiormq.abc.DeliveredMessage) -> None:
        if msg.header.properties.correlation_id != correlation_id:
            return
        reply = orjson.loads(msg.body)
        daemon = str(reply.get("daemon"))
        if reply.get("phase") == "accepted":
            accepted.add(daemon)
        else:
            results[daemon] = reply
        changed.set()

    try:
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        assert declared.queue is not None
        await channel.basic_consume(declared.queue, on_reply, no_ack=True)
        try:
            await publisher.publish_raw(
                orjson.dumps(command),
                exchange=CONTROL_EXCHANGE,
                routing_key="",
                correlation_id=correlation_id,
                persistent=False,
                reply_to=declared.queue,
            )
        except PublishRejected:
            raise NoDaemons("no running etld daemon with the workers role is listening") from None
        started = time.monotonic()
        window_end = started + gather_window
        deadline = started + timeout
        while True:
            now = time.monotonic()
            in_window = now < window_end
            if now >= deadline or (not in_window and accepted <= set(results)):
                break
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    changed.wait(), (window_end if in_window else deadline) - now
                )
    finally:
        await channel.close()
    for daemon in sorted(accepted - set(results)):
        results[daemon] = {
            "daemon": daemon,
            "ok": False,
            "error": f"no result within {timeout:g} s",
        }
    return [results[name] for name in sorted(results)]


async def workers_status(
    broker: BrokerConnection, publisher: Publisher, *, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Worker status (per stage and tier) of every running daemon."""
    return await broadcast(broker, publisher, {"command": "status"}, timeout=timeout)


async def restart_workers(
    broker: BrokerConnection,
    publisher: Publisher,
    *,
    stage: str | None = None,
    tier: str | None = None,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Restart the consumers of a stage (and tier), or all of them, in every daemon;
    each daemon answers once its in-flight handlers have finished and it consumes again."""
    command = {"command": "restart", "stage": stage, "tier": tier}
    return await broadcast(broker, publisher, command, timeout=timeout)


async def restart_all_workers(
    broker: BrokerConnection, publisher: Publisher, *, timeout: float = 60.0
) -> list[dict[str, Any]]:
    return await restart_workers(broker, publisher, timeout=timeout)
