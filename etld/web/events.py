"""Status event fan-out: PostgreSQL NOTIFY on `etld_status` → WebSocket subscribers.

Workers commit a job's status and `pg_notify('etld_status', ...)` in one transaction
(`Runs.announce`), and PostgreSQL delivers the notification to every listening
connection, so each web process of a multi-daemon setup sees every event without
talking to the others. The hub keeps one dedicated connection LISTENing; when it
drops, the hub reconnects with backoff and re-sends the current status of every job
somebody watches, since notifications sent while nobody listened are gone.

Dispatch never waits on a client: each subscription has a bounded queue, and a
client that lets it fill up is dropped (its handler closes the socket) instead of
slowing the others or growing memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from etld.errors import StartupError
from etld.logs import get_logger
from etld.store.pool import connect
from etld.store.queries import SQL

log = get_logger(__name__)

CHANNEL = "etld_status"
QUEUE_SIZE = 64
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
# A TCP connection can die without either side noticing; a periodic query finds out.
KEEPALIVE_INTERVAL = 30.0
KEEPALIVE_TIMEOUT = 5.0


@dataclass(eq=False)
class Subscription:
    """One WebSocket client's interest: a tenant's jobs, or one job of it."""

    tenant_id: int
    job_id: int | None
    queue: asyncio.Queue[str]
    # Set when the client must go: it fell behind, or the hub is shutting down.
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""

    def wants(self, job_id: int) -> bool:
        return self.job_id is None or self.job_id == job_id

    def offer(self, text: str) -> None:
        if self.closed.is_set():
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.close("client too slow")

    def close(self, reason: str) -> None:
        if not self.closed.is_set():
            self.reason = reason
            self.closed.set()


def status_message(tenant_id: int, job_id: int, status: Any) -> str:
    """The reference's `job_status_update` message, as sent to clients."""
    event: dict[str, Any] = {
        "type": "job_status_update",
        "tenant_id": tenant_id,
        "job_id": job_id,
        "status": status,
    }
    return orjson.dumps(event).decode()


class StatusHub:
    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 10.0,
        queue_size: int = QUEUE_SIZE,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
    ) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.queue_size = queue_size
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.keepalive_interval = keepalive_interval
        self.listening = asyncio.Event()
        self.connections = 0  # successful LISTENs so far; tests watch it for reconnects
        self._subs: dict[int, set[Subscription]] = {}
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Begin listening; returns once the first LISTEN is active (or its attempt timed out)."""
        self._task = asyncio.create_task(self._run(), name="status-listener")
        try:
            await asyncio.wait_for(self.listening.wait(), self.connect_timeout)
        except TimeoutError:
            log.warning("status listener not connected yet, retrying in the background")

    def disconnect_clients(self, reason: str = "server shutting down") -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.close(reason)

    async def stop(self) -> None:
        self.disconnect_clients()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_conn()

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend pid of the listening connection (None while down)."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, tenant_id: int, job_id: int | None = None) -> Subscription:
        sub = Subscription(tenant_id, job_id, asyncio.Queue(self.queue_size))
        self._subs.setdefault(tenant_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.tenant_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.tenant_id]

    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subs.values())

    def dispatch(self, tenant_id: int, job_id: int, status: Any) -> None:
        subs = [s for s in self._subs.get(tenant_id, ()) if s.wants(job_id)]
        if not subs:
            return
        text = status_message(tenant_id, job_id, status)  # encoded once for every client
        for sub in subs:
            sub.offer(text)

    # -- the listener --------------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = orjson.loads(payload)
            tenant_id, job_id = event["tenant_id"], event["job_id"]
            if not isinstance(tenant_id, int) or not isinstance(job_id, int):
                raise TypeError("tenant_id and job_id must be integers")
            status = event["status"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("ignoring malformed status event", error=str(exc))
            return
        self.dispatch(tenant_id, job_id, status)

    def _on_terminated(self, _conn: object) -> None:
        self._lost.set()

    async def _run(self) -> None:
        delay = self.backoff_first
        while True:
            try:
                await self._listen()
                delay = self.backoff_first
                await self._resync()  # nothing to do on the first connect: no clients yet
                await self._watch()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, StartupError, asyncpg.PostgresError) as exc:
                log.warning("status listener lost", error=str(exc), retry_in=delay)
            except Exception as exc:
                # Anything else (a closed-connection InterfaceError, a bug): this loop is
                # the only thing feeding the clients, so it retries rather than dies.
                log.warning("status listener failed", error=repr(exc), retry_in=delay)
            self.listening.clear()
            await self._close_conn()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def _listen(self) -> None:
        self._lost.clear()
        conn = await connect(self.dsn, self.connect_timeout)
        self._conn = conn
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(CHANNEL, self._on_notify)
        self.connections += 1
        self.listening.set()
        if self.connections > 1:
            log.info("status listener reconnected")

    async def _watch(self) -> None:
        """Return when the connection is gone (raising what the keepalive query raised)."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self.keepalive_interval)
            except TimeoutError:
                assert self._conn is not None
                await self._conn.fetchval("SELECT 1", timeout=KEEPALIVE_TIMEOUT)
                continue
            raise ConnectionResetError("listener connection closed")

    async def _resync(self) -> None:
        """Re-send what every watched job looks like now: events were lost while down."""
        tenants = [t for t, subs in self._subs.items() if any(s.job_id is None for s in subs)]
        jobs = [s.job_id for subs in self._subs.values() for s in subs if s.job_id is not None]
        if not tenants and not jobs:
            return
        assert self._conn is not None
        rows = await self._conn.fetch(SQL["api.statuses_for_resync"], tenants, jobs)
        for row in rows:
            self.dispatch(row["tenant_id"], row["id"], row["status"])
        log.info("status listener resynced", jobs=len(rows))

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.remove_termination_listener(self._on_terminated)
        if conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), KEEPALIVE_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()


HUB: web.AppKey[StatusHub] = web.AppKey("status_hub", StatusHub)


def setup_events(app: web.Application, dsn: str, connect_timeout: float) -> StatusHub:
    """Create the hub; it runs from app startup to app cleanup, clients leave at shutdown."""
    hub = StatusHub(dsn, connect_timeout=connect_timeout)
    app[HUB] = hub

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield
        await hub.stop()

    async def on_shutdown(_app: web.Application) -> None:
        hub.disconnect_clients()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return hub
