"""The simulated Jira Cloud server: an aiohttp app over a generated `JiraSite`.

`create_jira_app` wires the endpoints (`jira_meta`, `jira_api`) behind three layers, outermost
first: fault injection with call counting and Jira's rate-limit headers (`faults`), then Basic
auth, then error translation (`JiraError` -> Jira's `errorMessages` body). `serve_jira` runs it
standalone for `etld simulate jira`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.typedefs import Middleware

from etld.logs import get_logger
from etld.simulator import jira_api, jira_meta
from etld.simulator.faults import (
    SIM_PREFIX,
    ApiCallCounter,
    Fault,
    FaultPlan,
    Handler,
    HeaderDecorator,
    TokenBucket,
    add_stats_routes,
    fault_middleware,
)
from etld.simulator.jira_data import JiraSite, generate_site
from etld.simulator.jira_search import SearchEngine
from etld.simulator.jira_web import (
    ACCOUNT,
    CALLS,
    FAULTS,
    RENDERERS,
    SEARCH,
    SITE,
    USER,
    JiraError,
    error_response,
)

log = get_logger(__name__)

RATE_LIMIT_CAPACITY = 100  # reported burst size when no enforced rate is configured
RATE_LIMIT_REFILL = 10.0  # tokens per second
_AUTH_MESSAGE = "You are not authenticated. Authentication is required to perform this operation."
_REASON = "jira-burst-based"


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _render_fault(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.status == 401:
        return _unauthorized()
    if fault.status == 429:
        return error_response(
            429, "Rate limit exceeded. Retry after the period given in Retry-After."
        )
    if fault.status == 502:
        # Gateways answer with HTML, not Jira's JSON.
        return web.Response(
            status=502,
            text="<html><body><h1>502 Bad Gateway</h1></body></html>",
            content_type="text/html",
        )
    if fault.status == 503:
        return error_response(
            503, "The service is temporarily unavailable. Please try again later."
        )
    return error_response(fault.status, "Internal server error.")


def _unauthorized() -> web.Response:
    response = error_response(401, _AUTH_MESSAGE)
    response.headers["WWW-Authenticate"] = 'Basic realm="protected-area"'
    return response


def _header_decorator(bucket: TokenBucket) -> HeaderDecorator:
    def decorate(request: web.Request, response: web.StreamResponse, fault: Fault | None) -> None:
        now = datetime.now(UTC)
        limited = response.status == 429
        retry = fault.retry_after if fault is not None and fault.retry_after is not None else None
        headers = response.headers
        headers["X-RateLimit-Limit"] = str(bucket.capacity)
        headers["X-RateLimit-Remaining"] = "0" if limited else str(bucket.remaining)
        until = float(retry) if limited and retry is not None else bucket.seconds_to_full()
        headers["X-RateLimit-Reset"] = _iso(now + timedelta(seconds=until))
        headers["X-RateLimit-NearLimit"] = (
            "true" if bucket.remaining < bucket.capacity // 5 else "false"
        )
        if limited:
            headers["RateLimit-Reason"] = (fault.reason if fault is not None else None) or _REASON
        if retry is not None and response.status in (429, 503):
            headers["Retry-After"] = str(retry)
        if ACCOUNT in request:
            headers["X-AAccountId"] = request[ACCOUNT]

    return decorate


def _auth_middleware(user: str | None, token: str | None) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(SIM_PREFIX):
            return await handler(request)
        credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            return _unauthorized()
        got_user, got_token = credentials
        if (user is not None and got_user != user) or (token is not None and got_token != token):
            return _unauthorized()
        request[USER] = got_user
        request[ACCOUNT] = jira_meta.account_id(got_user)
        return await handler(request)

    return middleware


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, secret = decoded.partition(":")
    if not sep or not name or not secret:
        return None
    return name, secret


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JiraError as exc:
        return error_response(exc.status, *exc.messages, **exc.extra)


def create_jira_app(
    site: JiraSite,
    *,
    user: str | None = None,
    token: str | None = None,
    faults: FaultPlan | None = None,
    counter: ApiCallCounter | None = None,
) -> web.Application:
    """The simulator app. With `user`/`token` only those credentials pass Basic auth, otherwise
    any non-empty pair does. Calls are counted in `counter` (also `app[CALLS]`)."""
    counter = counter if counter is not None else ApiCallCounter()
    rate = faults.requests_per_second if faults is not None else None
    if rate is not None:  # enforced: a burst of one second's worth of calls
        bucket = TokenBucket(max(1, int(rate)), rate, enforce=True)
    else:  # only reported in the headers
        bucket = TokenBucket(RATE_LIMIT_CAPACITY, RATE_LIMIT_REFILL)
    gate = fault_middleware(
        plan=faults,
        counter=counter,
        bucket=bucket,
        render_fault=_render_fault,
        decorate=_header_decorator(bucket),
    )
    app = web.Application(middlewares=[gate, _auth_middleware(user, token), _error_middleware])
    app[SITE] = site
    app[SEARCH] = SearchEngine(site)
    app[CALLS] = counter
    app[RENDERERS] = {}
    if faults is not None:
        app[FAULTS] = faults
    jira_meta.add_routes(app)
    jira_api.add_routes(app)
    add_stats_routes(app, counter, faults)
    return app


async def serve_jira(
    host: str,
    port: int,
    issues: int,
    seed: int,
    user: str | None,
    token: str | None,
) -> None:
    """Generate a site and serve it on host:port until cancelled."""
    site = await asyncio.to_thread(generate_site, issues, seed)
    runner = web.AppRunner(create_jira_app(site, user=user, token=token), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("jira simulator listening", url=f"http://{host}:{port}", issues=issues, seed=seed)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
