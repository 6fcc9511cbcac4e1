"""The shared API client against a local aiohttp server: retries, rate limits, auth, size cap,
malformed bodies, redirects and the URL policy at connect time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from etld.sources.http import (
    GITHUB_LIMITS,
    JIRA_LIMITS,
    ApiClient,
    AuthError,
    HttpOptions,
    MalformedResponse,
    RateLimited,
    ResponseTooLarge,
    TransientError,
    stage_errors,
)
from etld.sources.urlpolicy import UrlPolicy, UrlPolicyError, resolve_result
from etld.workers.errors import Reject, Retry

LOCAL = UrlPolicy(allow_private_network=True)
FAST = HttpOptions(backoff_base=0.001, backoff_cap=0.01, max_inline_wait=2.0, timeout=5)
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """Log events captured in memory: a test may have left logging pointed at a closed stream."""
    with capture_logs():
        yield


class Sleeps:
    """Records the waits the client takes instead of taking them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def serve(aiohttp_server: Any, routes: dict[str, Route]) -> TestServer:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    server: TestServer = await aiohttp_server(app)
    return server


def base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def reply(body: Any = None, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, body, headers or {})


@dataclass(frozen=True)
class Reply:
    """A response to build afresh for each request (an aiohttp response is sent once)."""

    status: int
    body: Any
    headers: dict[str, str]

    def build(self) -> web.Response:
        if isinstance(self.body, bytes):
            return web.Response(body=self.body, status=self.status, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


def answers(*replies: Reply) -> Route:
    """Answer with each reply in turn, then keep repeating the last one."""
    queue = list(replies)

    async def handler(request: web.Request) -> web.StreamResponse:
        return (queue.pop(0) if len(queue) > 1 else queue[0]).build()

    return handler


async def test_5xx_is_retried_with_backoff_and_every_call_counted(aiohttp_server: Any) -> None:
    server = await serve(
        aiohttp_server,
        {"/x": answers(reply(b"", 503), reply(b"", 502), reply({"ok": 1}))},
    )
    sleeps = Sleeps()
    async with ApiClient(
        base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=sleeps
    ) as api:
        assert await api.get("/x") == {"ok": 1}
        assert api.calls == 3
    assert len(sleeps.waits) == 2


async def test_persistent_5xx_raises_a_transient_error(aiohttp_server: Any) -> None:
    server = await serve(aiohttp_server, {"/x": answers(reply(b"", 500))})
    async with ApiClient(
        base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=Sleeps()
    ) as api:
        with pytest.raises(TransientError, match="answered 500"):
            await api.get("/x")
        assert api.calls == FAST.max_retries + 1


async def test_network_errors_are_retried_then_raised() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ApiClient(
        f"http://127.0.0.1:{port}", hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=Sleeps()
    ) as api:
        with pytest.raises(TransientError, match="request failed"):
            await api.get("/x")


async def test_short_retry_after_is_waited_out_by_every_request_to_the_host(
    aiohttp_server: Any,
) -> None:
    limited = reply({"errorMessages": ["slow down"]}, 429, {"Retry-After": "1"})
    server = await serve(
        aiohttp_server, {"/x": answers(limited, reply([1])), "/y": answers(reply([2]))}
    )
    sleeps = Sleeps()
    async with (
        ApiClient(base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=sleeps) as a,
        ApiClient(base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=sleeps) as b,
    ):
        assert await a.get("/x") == [1]
        assert await b.get("/y") == [2]  # another client of the same host waits as well
    assert len(sleeps.waits) == 2
    assert all(0.5 < w <= 1.0 for w in sleeps.waits)


async def test_long_retry_after_becomes_a_delayed_retry_not_a_sleep(aiohttp_server: Any) -> None:
    limited = reply({}, 429, {"Retry-After": "120"})
    server = await serve(aiohttp_server, {"/x": answers(limited)})
    sleeps = Sleeps()
    async with ApiClient(
        base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=sleeps
    ) as api:
        with pytest.raises(Retry) as caught, stage_errors():
            await api.get("/x")
        # The host stays blocked: the next request does not even reach the server.
        with pytest.raises(RateLimited):
            await api.get("/x")
        assert api.calls == 1
    assert caught.value.delay == 120
    assert caught.value.count is False
    assert sleeps.waits == []


async def test_exhausted_budget_blocks_until_the_iso_reset(aiohttp_server: Any) -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    response = reply({"n": 1}, 200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    server = await serve(aiohttp_server, {"/x": answers(response)})
    async with ApiClient(
        base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=Sleeps()
    ) as api:
        assert await api.get("/x") == {"n": 1}
        with pytest.raises(RateLimited) as caught:
            await api.get("/x")
        assert api.calls == 1
    assert 25 < caught.value.delay <= 30


async def test_github_hooks_read_epoch_resets_and_tell_limits_from_refusals(
    aiohttp_server: Any,
) -> None:
    now = datetime.now(UTC).timestamp()
    primary = reply(
        {"message": "API rate limit exceeded"},
        403,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now) + 90)},
    )
    refused = reply({"message": "Bad credentials"}, 403)
    server = await serve(
        aiohttp_server, {"/limited": answers(primary), "/refused": answers(refused)}
    )
    async with ApiClient(
        base(server), hooks=GITHUB_LIMITS, policy=LOCAL, options=FAST, sleep=Sleeps()
    ) as api:
        with pytest.raises(RateLimited) as caught:
            await api.get("/limited")
        assert 80 < caught.value.delay <= 91
    async with ApiClient(
        base(server), hooks=GITHUB_LIMITS, policy=UrlPolicy(True), options=FAST, sleep=Sleeps()
    ) as api:
        api._limiter.blocked_until = 0  # type: ignore[union-attr]
        with pytest.raises(AuthError, match="GitHub rejected the credentials"):
            await api.get("/refused")


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_fail_at_once_with_the_exact_message(
    aiohttp_server: Any, status: int
) -> None:
    server = await serve(aiohttp_server, {"/x": answers(reply({}, status))})
    async with ApiClient(
        base(server) + "/", hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, sleep=Sleeps()
    ) as api:
        with pytest.raises(Reject) as caught, stage_errors():
            await api.get("/x")
        assert api.calls == 1  # no retry storm
    assert caught.value.reason == f"Jira rejected the credentials for {base(server)}"


async def test_declared_oversize_is_refused_without_reading_it(aiohttp_server: Any) -> None:
    server = await serve(aiohttp_server, {"/x": answers(reply(b"[" + b"1," * 5000 + b"1]"))})
    options = HttpOptions(max_response_bytes=1000, timeout=5)
    async with ApiClient(base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=options) as api:
        with pytest.raises(ResponseTooLarge, match="declares 10003 bytes"):
            await api.get("/x")


async def test_streamed_oversize_stops_at_the_cap(aiohttp_server: Any) -> None:
    sent: list[int] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(200):  # 200 x 64 KiB = 12.5 MiB if nobody stops us
            try:
                await response.write(b" " * 65536)
            except (ConnectionResetError, RuntimeError):
                break
            sent.append(1)
            await asyncio.sleep(0)
        return response

    server = await serve(aiohttp_server, {"/x": endless})
    options = HttpOptions(max_response_bytes=1024 * 1024, timeout=5)
    async with ApiClient(base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=options) as api:
        with pytest.raises(ResponseTooLarge, match="exceeded it while reading"):
            await api.get("/x")


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b'{"issues": [{"id": "1"', b""])
async def test_malformed_json_is_a_reject_naming_the_problem(
    aiohttp_server: Any, body: bytes
) -> None:
    server = await serve(aiohttp_server, {"/x": answers(reply(body))})
    async with ApiClient(base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST) as api:
        with pytest.raises(MalformedResponse, match="invalid JSON"):
            await api.get("/x")
        with pytest.raises(Reject, match="malformed response to GET"), stage_errors():
            await api.get("/x")


async def test_redirects_are_followed_and_checked_hop_by_hop(aiohttp_server: Any) -> None:
    seen: list[str | None] = []

    async def target(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"moved": True})

    server = await serve(
        aiohttp_server,
        {
            "/old": answers(reply(b"", 301, {"Location": "/new"})),
            "/new": target,
            "/evil": answers(reply(b"", 302, {"Location": "http://169.254.169.254/latest"})),
        },
    )
    headers = {"Authorization": "Basic eDp5"}
    async with ApiClient(
        base(server), hooks=JIRA_LIMITS, policy=LOCAL, options=FAST, headers=headers
    ) as api:
        assert await api.get("/old") == {"moved": True}
        assert seen == ["Basic eDp5"]  # same origin keeps the credentials
        with pytest.raises(UrlPolicyError, match=r"169\.254\.169\.254 is a cloud metadata address"):
            await api.get("/evil")
        assert api.calls == 3  # the refused hop was never requested


class FixedResolver(AbstractResolver):
    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [resolve_result(host, self.address, port)]

    async def close(self) -> None:
        return None


async def test_a_name_resolving_to_a_private_address_is_refused_at_connect(
    aiohttp_server: Any,
) -> None:
    server = await serve(aiohttp_server, {"/x": answers(reply({}))})
    async with ApiClient(
        f"https://jira.example.com:{server.port}",
        hooks=JIRA_LIMITS,
        policy=UrlPolicy(),
        options=FAST,
        resolver=FixedResolver("127.0.0.1"),
    ) as api:
        with pytest.raises(UrlPolicyError) as caught:
            await api.get("/x")
    message = str(caught.value)
    assert "https://jira.example.com" in message
    assert "resolves to 127.0.0.1 is a loopback address" in message


def test_options_come_from_integration_settings() -> None:
    options = HttpOptions.from_settings({"http": {"max_response_mib": 2, "timeout": 5}})
    assert options.max_response_bytes == 2 * 1024 * 1024
    assert options.timeout == 5
    assert HttpOptions.from_settings({}).max_response_bytes == 64 * 1024 * 1024
