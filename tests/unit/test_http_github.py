"""The API client's GitHub habits: Link targets, conditional GETs answered 304, several tokens
used in turn (a spent one rests, the others carry on), and secondary limits told only by the
body, waited a minute and longer while they repeat."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from etld.sources.http import GITHUB_LIMITS, ApiClient, RateLimited, parse_links
from tests.unit.test_http_client import (
    FAST,
    LOCAL,
    Sleeps,
    answers,
    base,
    quiet_logs,  # noqa: F401
    reply,
    serve,
)


def test_link_headers_give_absolute_targets() -> None:
    header = (
        '<https://api.github.com/repositories/515435940/issues?per_page=3&page=2>; rel="next", '
        '<https://api.github.com/repositories/515435940/issues?per_page=3&page=5>; rel="last", '
        '</relative?page=1>; rel="first prev"'
    )
    found = parse_links(header, URL("https://api.github.com/repos/o/r/issues?per_page=3"))
    assert found == {
        "next": "https://api.github.com/repositories/515435940/issues?per_page=3&page=2",
        "last": "https://api.github.com/repositories/515435940/issues?per_page=3&page=5",
        "first": "https://api.github.com/relative?page=1",
        "prev": "https://api.github.com/relative?page=1",
    }
    assert parse_links(None, URL("https://x")) == {}


async def test_conditional_get_returns_304_without_data(aiohttp_server: Any) -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        link = f'<{request.url.with_query(page="2")}>; rel="next"'
        return web.json_response([{"n": 1}], headers={"ETag": '"v1"', "Link": link})

    server = await serve(aiohttp_server, {"/items": handler})
    async with ApiClient(base(server), hooks=GITHUB_LIMITS, policy=LOCAL, options=FAST) as api:
        page = await api.get_page("/items", [("page", 1)])
        assert (page.status, page.data, page.etag) == (200, [{"n": 1}], '"v1"')
        assert page.links["next"].endswith("/items?page=2")
        again = await api.get_page(page.url, etag=page.etag)
        assert again.not_modified
        assert again.data is None
        assert again.etag == '"v1"'
    assert seen == [None, '"v1"']


async def test_tokens_take_turns_and_a_spent_one_rests(aiohttp_server: Any) -> None:
    reset = int(datetime.now(UTC).timestamp()) + 600
    used: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        used.append(token)
        if token == "spent":
            body = {"message": "API rate limit exceeded"}
            headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
            return web.json_response(body, status=403, headers=headers)
        return web.json_response({"ok": token}, headers={"x-ratelimit-remaining": "100"})

    server = await serve(aiohttp_server, {"/x": handler})
    sleeps = Sleeps()
    async with ApiClient(
        base(server),
        hooks=GITHUB_LIMITS,
        policy=LOCAL,
        options=FAST,
        sleep=sleeps,
        tokens=["a", "spent", "b"],
    ) as api:
        results = [await api.get("/x") for _ in range(6)]
    assert {r["ok"] for r in results} == {"a", "b"}
    assert used.count("spent") == 1  # refused once, then left to rest
    assert sleeps.waits == []  # the others carried on without waiting

    async with ApiClient(
        base(server),
        hooks=GITHUB_LIMITS,
        policy=LOCAL,
        options=FAST,
        sleep=Sleeps(),
        tokens=["spent"],
    ) as api:
        with pytest.raises(RateLimited) as caught:
            await api.get("/x")
    assert 590 < caught.value.delay <= 601


async def test_a_secondary_limit_told_by_the_body_waits_a_minute_then_longer(
    aiohttp_server: Any,
) -> None:
    secondary = reply({"message": "You have exceeded a secondary rate limit."}, 403)
    server = await serve(
        aiohttp_server,
        {"/limited": answers(secondary), "/fine": answers(reply({"ok": True}))},
    )
    delays = []
    async with ApiClient(base(server), hooks=GITHUB_LIMITS, policy=LOCAL, options=FAST) as api:
        for _ in range(3):
            with pytest.raises(RateLimited) as caught:
                await api.get("/limited")
            delays.append(caught.value.delay)
            assert api._limiter is not None
            api._limiter.blocked_until = 0  # time passes
        assert await api.get("/fine") == {"ok": True}  # a good answer ends the streak
        with pytest.raises(RateLimited) as caught:
            await api.get("/limited")
    assert delays == [60.0, 120.0, 240.0]
    assert caught.value.delay == 60.0
