"""Plumbing of the simulated GitHub: app keys, error bodies, `Link` paging, and the per-token
rate-limit ledger that also notices clients calling again before they were told they may.

GitHub counts calls per token in a window (`x-ratelimit-*`, the reset in epoch seconds).
A token out of calls is refused (403, or 429) until the reset; a secondary limit refuses it
for the `retry-after` it announced, or a minute when it announced none. `RateLimits.early`
counts calls refused again within such a wait: a well-behaved client keeps it at zero.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web

from etld.simulator.faults import ApiCallCounter, FaultPlan
from etld.simulator.github_data import GitHubSite
from etld.simulator.github_render import Renderer

DOCS = "https://docs.github.com/rest"
JSON_TYPE = "application/json; charset=utf-8"
SECONDARY_DEFAULT_WAIT = 60  # what GitHub asks of a client told no retry-after
IN_FLIGHT_GRACE = 0.25  # seconds: calls already on their way when a refusal went out
T = TypeVar("T")


class GitHubError(Exception):
    """Raised by handlers; answered with GitHub's `{"message", "documentation_url"}` body."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


class Moved(Exception):
    """A renamed repository: answered 301 (GET) or 307 (other methods) to /repositories/{id}."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        headers={"Content-Type": JSON_TYPE, **(headers or {})},
    )


def error_response(
    status: int, message: str, errors: list[dict[str, str]] | None = None
) -> web.Response:
    body: dict[str, Any] = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors:
        body["errors"] = errors
    return json_response(body, status)


def invalid(resource: str, field: str, code: str = "invalid") -> GitHubError:
    return GitHubError(
        422, "Validation Failed", [{"resource": resource, "field": field, "code": code}]
    )


# -- rate limits ------------------------------------------------------------------------------


@dataclass
class _Window:
    used: int
    reset_at: int  # epoch seconds
    refused_at: float | None = None  # when a primary refusal last went out
    secondary_until: float = 0.0
    secondary_at: float | None = None
    secondary_announced: int | None = None


@dataclass(frozen=True)
class Refusal:
    kind: str  # "primary" or "secondary"
    retry_after: int | None


class RateLimits:
    """Calls per token and window, secondary waits, and early calls (see module docstring)."""

    def __init__(
        self,
        limit: int = 5000,
        window: float = 3600.0,
        *,
        status: int = 403,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self.status = status
        self.clock = clock
        self.early = 0
        self.refused: Counter[str] = Counter()
        self._windows: dict[str, _Window] = {}

    def _current(self, token: str) -> _Window:
        now = self.clock()
        found = self._windows.get(token)
        if found is None or now >= found.reset_at:
            found = self._windows[token] = _Window(0, math.ceil(now + self.window))
        return found

    def check(self, token: str) -> Refusal | None:
        """Whether this call is refused; counts it as early when the token was told to wait."""
        now = self.clock()
        w = self._current(token)
        if now < w.secondary_until:
            if w.secondary_at is not None and now - w.secondary_at > IN_FLIGHT_GRACE:
                self.early += 1
            self.refused["secondary"] += 1
            left = w.secondary_until - now
            return Refusal("secondary", math.ceil(left) if w.secondary_announced else None)
        if w.used >= self.limit:
            if w.refused_at is not None and now - w.refused_at > IN_FLIGHT_GRACE:
                self.early += 1
            w.refused_at = w.refused_at or now
            self.refused["primary"] += 1
            return Refusal("primary", None)
        return None

    def charge(self, token: str, calls: int = 1) -> None:
        w = self._current(token)
        w.used = max(0, w.used + calls)

    def secondary(self, token: str, retry_after: int | None) -> None:
        """A secondary limit was answered: the token must wait."""
        now = self.clock()
        w = self._current(token)
        if now >= w.secondary_until:
            w.secondary_at = now
            w.secondary_announced = retry_after
            w.secondary_until = now + (retry_after or SECONDARY_DEFAULT_WAIT)

    def headers(self, token: str | None) -> dict[str, str]:
        if token is None:
            return {
                "x-ratelimit-limit": "60",
                "x-ratelimit-remaining": "59",
                "x-ratelimit-used": "1",
                "x-ratelimit-resource": "core",
                "x-ratelimit-reset": str(math.ceil(self.clock() + self.window)),
            }
        w = self._current(token)
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(0, self.limit - w.used)),
            "x-ratelimit-used": str(min(w.used, self.limit)),
            "x-ratelimit-reset": str(w.reset_at),
            "x-ratelimit-resource": "core",
        }

    def exhaust(self, token: str) -> None:
        """Spend every call of the token's window (tests)."""
        self._current(token).used = self.limit

    def reset(self) -> None:
        """Every window starts over and every wait is over, as if an hour went by (tests)."""
        self._windows.clear()


# -- app keys and paging ------------------------------------------------------------------------

SITE = web.AppKey("github_site", GitHubSite)
LIMITS = web.AppKey("github_limits", RateLimits)
CALLS = web.AppKey("github_calls", ApiCallCounter)
STATUSES = web.AppKey("github_statuses", Counter[int])
FAULTS = web.AppKey("github_faults", FaultPlan)
RENDERERS = web.AppKey("github_renderers", dict[str, Renderer])
TOKEN = web.RequestKey("github_token", str)
PER_PAGE_DEFAULT = 30
PER_PAGE_MAX = 100


def api_root(request: web.Request) -> str:
    return request.app[SITE].base_url or f"{request.scheme}://{request.host}"


def renderer(request: web.Request) -> Renderer:
    api = api_root(request)
    cache = request.app[RENDERERS]
    if api not in cache:
        cache[api] = Renderer(request.app[SITE], api)
    return cache[api]


def int_param(request: web.Request, name: str, default: int, resource: str) -> int:
    raw = request.query.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(resource, name) from None


def choice(
    request: web.Request, name: str, allowed: Sequence[str], default: str, resource: str
) -> str:
    value = request.query.get(name, default) or default
    if value not in allowed:
        raise invalid(resource, name)
    return value


def paginate(
    request: web.Request, items: Sequence[T], path: str, resource: str, cap: int | None = None
) -> tuple[Sequence[T], dict[str, str]]:
    """One page of `items` and its `Link` header, whose URLs use `path` (which may differ
    from the requested one, as GitHub's `/repositories/{id}/...` links do)."""
    per_page = min(max(1, int_param(request, "per_page", PER_PAGE_DEFAULT, resource)), PER_PAGE_MAX)
    page = max(1, int_param(request, "page", 1, resource))
    total = len(items) if cap is None else min(len(items), cap)
    last = max(1, math.ceil(total / per_page))
    start = (page - 1) * per_page
    chunk = items[start : min(start + per_page, total)]
    query = {k: v for k, v in request.query.items() if k != "page"}

    def link(n: int) -> str:
        url = request.url.with_path(path).with_query({**query, "page": str(n)})
        return f"{api_root(request)}{url.path_qs}"

    rels = []
    if page > 1:
        rels += [(link(min(page - 1, last)), "prev"), (link(1), "first")]
    if page < last:
        rels += [(link(page + 1), "next"), (link(last), "last")]
    headers = {"Link": ", ".join(f'<{u}>; rel="{r}"' for u, r in rels)} if rels else {}
    return chunk, headers
