"""The simulated GitHub REST API: an aiohttp app over a generated `GitHubSite`.

`create_github_app` wires the endpoints (`github_api`) behind five layers, outermost first:
fault injection with call counting and the `x-ratelimit-*` headers (`faults`; an injected
rate limit is a secondary limit, with `retry-after` when the fault has one), token auth,
the per-token primary and secondary limits (`RateLimits`), ETags with 304 answers to a
matching `If-None-Match` (not charged, as on GitHub), and error translation (GitHub's
`{"message": ...}` bodies, 301/307 for a renamed repository). `serve_github` runs it
standalone for `etld simulate github`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Sequence

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from etld.logs import get_logger
from etld.simulator import github_api
from etld.simulator.faults import (
    SIM_PREFIX,
    ApiCallCounter,
    Fault,
    FaultKind,
    FaultPlan,
    Handler,
    HeaderDecorator,
    TokenBucket,
    add_stats_routes,
    fault_middleware,
)
from etld.simulator.github_data import GitHubSite, generate_github
from etld.simulator.github_web import (
    CALLS,
    DOCS,
    FAULTS,
    LIMITS,
    RENDERERS,
    SITE,
    STATUSES,
    TOKEN,
    GitHubError,
    Moved,
    RateLimits,
    Refusal,
    error_response,
    json_response,
)

log = get_logger(__name__)

_PRIMARY = (
    "API rate limit exceeded for user. If you reach out to GitHub Support for help, please "
    "include the request ID."
)
_SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
_LIMITS_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"


def token_of(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <t>` (or GitHub's older `token <t>`)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return None


def _limit_body(message: str, status: int) -> web.Response:
    body = {"message": message, "documentation_url": _LIMITS_DOCS, "status": str(status)}
    return json_response(body, status)


def _render_fault(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind is FaultKind.RATE_LIMIT:
        return _limit_body(_SECONDARY, fault.status)
    if fault.status == 401:
        return error_response(401, "Bad credentials")
    if fault.status == 502:
        return web.Response(
            status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
        )
    return error_response(fault.status, "Server Error")


def _header_decorator(limits: RateLimits, statuses: Counter[int]) -> HeaderDecorator:
    def decorate(request: web.Request, response: web.StreamResponse, fault: Fault | None) -> None:
        statuses[response.status] += 1
        token = request.get(TOKEN) or token_of(request)
        if fault is not None and fault.kind is FaultKind.RATE_LIMIT and token is not None:
            # retry_after 0 stands for "no header": the client must wait a minute by itself.
            announced = fault.retry_after or None
            limits.secondary(token, announced)
            if announced:
                response.headers["retry-after"] = str(announced)
        if response.status != 401:
            response.headers.update(limits.headers(token))

    return decorate


def _auth_middleware(tokens: frozenset[str] | None) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(SIM_PREFIX):
            return await handler(request)
        token = token_of(request)
        if token is None:
            return error_response(401, "Requires authentication")
        if tokens is not None and token not in tokens:
            return error_response(401, "Bad credentials")
        request[TOKEN] = token
        return await handler(request)

    return middleware


def _refused(refusal: Refusal, status: int) -> web.Response:
    if refusal.kind == "primary":
        return _limit_body(_PRIMARY, status)
    response = _limit_body(_SECONDARY, 403)
    if refusal.retry_after:
        response.headers["retry-after"] = str(refusal.retry_after)
    return response


@web.middleware
async def _limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(SIM_PREFIX) or request.path == "/rate_limit":
        return await handler(request)
    limits = request.app[LIMITS]
    token = request[TOKEN]
    refusal = limits.check(token)
    if refusal is not None:
        return _refused(refusal, limits.status)
    limits.charge(token)
    return await handler(request)


@web.middleware
async def _etag_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (
        request.method != "GET"
        or response.status != 200
        or not isinstance(response, web.Response)
        or not isinstance(response.body, bytes)
    ):
        return response
    tag = '"' + hashlib.blake2b(response.body, digest_size=16).hexdigest() + '"'
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
    wanted = {
        t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")
    }
    if tag in wanted:
        if TOKEN in request:
            request.app[LIMITS].charge(request[TOKEN], -1)  # a 304 costs no call
        return web.Response(status=304, headers={"ETag": tag})
    return response


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GitHubError as exc:
        return error_response(exc.status, exc.message, exc.errors)
    except Moved as exc:
        status = 301 if request.method in ("GET", "HEAD") else 307
        body = {"message": "Moved Permanently", "url": exc.location, "documentation_url": DOCS}
        return json_response(body, status, {"Location": exc.location})
    except web.HTTPNotFound:
        return error_response(404, "Not Found")
    except web.HTTPMethodNotAllowed:
        return error_response(404, "Not Found")


def create_github_app(
    site: GitHubSite,
    *,
    token: str | Sequence[str] | None = None,
    faults: FaultPlan | None = None,
    counter: ApiCallCounter | None = None,
    limits: RateLimits | None = None,
) -> web.Application:
    """The simulator app. With `token` (one or several) only those pass, otherwise any
    non-empty token does. Calls are counted in `counter` (also `app[CALLS]`), answers by
    status in `app[STATUSES]`; `limits` sets the rate limits (5000 calls an hour)."""
    counter = counter if counter is not None else ApiCallCounter()
    limits = limits if limits is not None else RateLimits()
    statuses: Counter[int] = Counter()
    rate = faults.requests_per_second if faults is not None else None
    bucket = (
        TokenBucket(max(1, int(rate)), rate, enforce=True)
        if rate is not None
        else TokenBucket(1_000_000, 1_000_000.0)
    )
    gate = fault_middleware(
        plan=faults,
        counter=counter,
        bucket=bucket,
        render_fault=_render_fault,
        decorate=_header_decorator(limits, statuses),
    )
    tokens = frozenset([token] if isinstance(token, str) else token) if token else None
    app = web.Application(
        middlewares=[
            gate,
            _auth_middleware(tokens),
            _limits_middleware,
            _etag_middleware,
            _error_middleware,
        ]
    )
    app[SITE] = site
    app[LIMITS] = limits
    app[CALLS] = counter
    app[STATUSES] = statuses
    app[RENDERERS] = {}
    if faults is not None:
        app[FAULTS] = faults
    github_api.add_routes(app)
    add_stats_routes(app, counter, faults)

    async def limit_stats(request: web.Request) -> web.Response:
        body = {
            "early": limits.early,
            "refused": dict(limits.refused),
            "statuses": {str(k): n for k, n in statuses.items()},
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app.router.add_get(SIM_PREFIX + "limits", limit_stats)
    return app


async def serve_github(host: str, port: int, prs: int, seed: int, token: str | None) -> None:
    """Generate a site and serve it on host:port until cancelled."""
    site = await asyncio.to_thread(generate_github, prs, seed)
    runner = web.AppRunner(create_github_app(site, token=token), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("github simulator listening", url=f"http://{host}:{port}", prs=prs, seed=seed)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
