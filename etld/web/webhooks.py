"""Webhook routes: `POST /webhooks/jira/{integration}` and `POST /webhooks/github/{integration}`.

`{integration}` is the integration's numeric id. The id is not a secret; the webhook secret
is (see `etld.webhooks.verify`). A delivery whose integration is unknown, of another
provider, without a secret, or whose proof is missing or wrong gets the same 401 and changes
nothing; the log says which. Bodies larger than `web.max_body_bytes` get 413 unread.

A verified delivery is recorded (`webhook_events`) with the items it names, which join the
integration's pending targets, and answered 202 at once; the dispatcher started here with the
web server turns pending targets into targeted runs (`etld.webhooks.dispatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from etld.logs import get_logger
from etld.store.queries import SQL
from etld.web.errors import error_response
from etld.web.keys import DAEMON
from etld.webhooks.dispatch import WebhookDispatcher
from etld.webhooks.events import Event, github_event, jira_event
from etld.webhooks.verify import github_ok, jira_ok, webhook_secret

log = get_logger(__name__)

DISPATCHER: web.AppKey[WebhookDispatcher] = web.AppKey("webhook_dispatcher")
_INTEGRATION = r"{integration:\d{1,18}}"
_REFUSED = "invalid signature or secret"


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"/webhooks/jira/{_INTEGRATION}", jira_webhook)
    app.router.add_post(f"/webhooks/github/{_INTEGRATION}", github_webhook)
    app.cleanup_ctx.append(_dispatcher)


async def _dispatcher(app: web.Application) -> AsyncIterator[None]:
    daemon = app[DAEMON]
    runs = daemon.services.get("runs")
    if daemon.pool is None or runs is None:  # an app without a pipeline (some tests)
        yield
        return
    dispatcher = WebhookDispatcher(daemon.pool, runs)
    app[DISPATCHER] = dispatcher
    task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def jira_webhook(request: web.Request) -> web.Response:
    return await _receive(request, "jira", jira_event)


async def github_webhook(request: web.Request) -> web.Response:
    return await _receive(request, "github", github_event)


async def _receive(
    request: web.Request, provider: str, read_event: Callable[[dict[str, Any], Any], Event]
) -> web.Response:
    daemon = request.app[DAEMON]
    assert daemon.pool is not None, "the web app runs only after the pool is up"
    cap = daemon.config.web.max_body_bytes
    if request.content_length is not None and request.content_length > cap:
        return error_response(413, f"webhook bodies are limited to {cap} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, f"webhook bodies are limited to {cap} bytes")
    integration_id = int(request.match_info["integration"])
    async with daemon.pool.acquire() as conn:
        row = await conn.fetchrow(SQL["webhooks.integration"], integration_id)
    refusal = _refusal(row, provider, body, request, daemon.config.security.secret_key)
    if refusal is not None:
        log.warning(
            "webhook refused", provider=provider, integration_id=integration_id, why=refusal
        )
        return error_response(401, _REFUSED, {"WWW-Authenticate": 'Bearer realm="etld-webhooks"'})
    assert row is not None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error_response(400, "the body is not JSON")
    if not isinstance(payload, dict):
        return error_response(400, "the body is not a JSON object")
    event = read_event(payload, request.headers)
    if not row["active"]:
        return _json({"event": event.name, "queued": [], "ignored": "integration inactive"})
    async with daemon.pool.acquire() as conn, conn.transaction():
        for target in event.targets:
            await conn.execute(
                SQL["webhooks.add_target"], row["tenant_id"], row["id"], target.key, target.body
            )
        await conn.execute(
            SQL["webhooks.record_event"],
            row["tenant_id"],
            row["id"],
            provider,
            event.name,
            event.delivery_id,
            [t.body for t in event.targets],
        )
    dispatcher = request.app.get(DISPATCHER)
    if dispatcher is not None and event.targets:
        dispatcher.wake()
    return _json({"event": event.name, "queued": [t.key for t in event.targets]})


def _refusal(
    row: Any, provider: str, body: bytes, request: web.Request, secret_key: str
) -> str | None:
    """Why a delivery is refused, or None when its proof holds."""
    if row is None:
        return "no such integration"
    if row["provider"] != provider:
        return f"the integration's provider is {row['provider']}"
    secret = webhook_secret(row, secret_key)
    if secret is None:
        return "the integration has no usable webhook secret"
    if provider == "github":
        ok = github_ok(secret, body, request.headers)
    else:
        ok = jira_ok(secret, body, request.headers, request.query)
    return None if ok else "bad or missing signature or secret"


def _json(data: Any, status: int = 202) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
