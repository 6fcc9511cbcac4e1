"""WebSocket feeds of job status: one job per stage channel, or every job of a tenant.

Everything that can refuse a client happens before the upgrade, as a plain HTTP
answer: no credential (401), a foreign Origin (403), another tenant (403), an
unknown job (404). After the upgrade a client only ever holds a subscription to its
own tenant, so it cannot receive anything else.

The subscription is taken before the current status is read, so a change committed
in between is not missed; at worst the client sees that change twice, which is
harmless because every message carries the complete status.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, web

from etld.logs import get_logger
from etld.store.queries import SQL
from etld.web.auth import PRINCIPAL
from etld.web.errors import forbidden, not_found
from etld.web.events import HUB, Subscription, status_message
from etld.web.keys import DAEMON

log = get_logger(__name__)

HEARTBEAT = 20.0  # seconds between pings; a client missing the pong is closed
CLOSE_TIMEOUT = 2.0
MAX_CLIENT_MESSAGE = 4096  # clients have nothing to say; keep what they may send small
_ID = r"\d{1,18}"  # fits a bigint, so a huge number is a 404 rather than a SQL error


def add_routes(app: web.Application) -> None:
    stages = "extraction|transform|embedding"
    app.router.add_get(f"/ws/job/{{stage:{stages}}}/{{tenant_id:{_ID}}}/{{job_id:{_ID}}}", job_feed)
    app.router.add_get(f"/ws/tenant/{{tenant_id:{_ID}}}", tenant_feed)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(request: web.Request) -> None:
    """Browsers always send Origin on a WebSocket; only this site and listed ones may connect."""
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser: the credential alone decides
    web_cfg = request.app[DAEMON].config.web
    allowed = {_origin(f"{request.scheme}://{request.host}")}
    allowed.update(_origin(o) for o in web_cfg.allowed_origins)
    if web_cfg.public_url:
        allowed.add(_origin(web_cfg.public_url))
    if _origin(origin) not in allowed:
        raise forbidden("origin not allowed")


def _tenant_of_request(request: web.Request) -> int:
    tenant_id = int(request.match_info["tenant_id"])
    if not request[PRINCIPAL].owns(tenant_id):
        raise forbidden("not allowed for this tenant")
    return tenant_id


async def job_feed(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    tenant_id = _tenant_of_request(request)
    job_id = int(request.match_info["job_id"])
    hub = request.app[HUB]
    sub = hub.subscribe(tenant_id, job_id)
    try:
        pool = request.app[DAEMON].pool
        assert pool is not None
        async with pool.acquire() as conn:
            row = await conn.fetchrow(SQL["api.job_status"], job_id, tenant_id)
        if row is None:
            raise not_found("no such job")
        first = [status_message(tenant_id, job_id, row["status"])]
        return await _serve(request, sub, first)
    finally:
        hub.unsubscribe(sub)


async def tenant_feed(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    tenant_id = _tenant_of_request(request)
    hub = request.app[HUB]
    sub = hub.subscribe(tenant_id)
    try:
        pool = request.app[DAEMON].pool
        assert pool is not None
        async with pool.acquire() as conn:
            if not await conn.fetchval(SQL["api.tenant_exists"], tenant_id):
                raise not_found("no such tenant")
            rows = await conn.fetch(SQL["api.tenant_job_statuses"], tenant_id)
        first = [status_message(tenant_id, r["id"], r["status"]) for r in rows]
        return await _serve(request, sub, first)
    finally:
        hub.unsubscribe(sub)


async def _serve(
    request: web.Request, sub: Subscription, first: list[str]
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_CLIENT_MESSAGE)
    await ws.prepare(request)
    sender = asyncio.create_task(_send(ws, sub, first))
    reader = asyncio.create_task(_read(ws))
    dropped = asyncio.create_task(sub.closed.wait())
    tasks = {sender, reader, dropped}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if sub.closed.is_set():
        code = (
            WSCloseCode.GOING_AWAY
            if sub.reason == "server shutting down"
            else WSCloseCode.TRY_AGAIN_LATER
        )
        log.info("websocket client dropped", reason=sub.reason, tenant_id=sub.tenant_id)
        # A client that stopped reading may never take the close frame either.
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ws.close(code=code, message=sub.reason.encode())
    elif not ws.closed:
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, sub: Subscription, first: list[str]) -> None:
    for text in first:
        await ws.send_str(text)
    while True:
        text = await sub.queue.get()
        await ws.send_str(text)


async def _read(ws: web.WebSocketResponse) -> None:
    # Reading is what processes the client's close frame and pongs; messages are ignored.
    async for _msg in ws:
        pass
