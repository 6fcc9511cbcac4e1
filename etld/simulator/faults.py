"""Fault injection, rate-limit accounting and call counting for the API simulators.

A `FaultPlan` decides, call by call, whether a response is replaced by a rate limit, a server
error or a 401, delayed, or has its JSON body damaged. Faults come either from a schedule ("the
next 3 calls under /rest/api/3/search") or from a seeded RNG, so a failing run can be replayed.
`ApiCallCounter` records every call so tests can assert how many requests a client made, and
`TokenBucket` gives the simulators plausible rate-limit headers (and optional enforcement).

Everything here is protocol-neutral: each simulator renders the error bodies and rate-limit
headers of the API it imitates through the two callbacks given to `fault_middleware`.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

#: Paths under this prefix belong to the simulator itself: never counted, never faulted.
SIM_PREFIX = "/_sim/"


class FaultKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    UNAUTHORIZED = "unauthorized"
    LATENCY = "latency"
    TRUNCATED = "truncated"
    INVALID_JSON = "invalid_json"


# Kinds that replace the handler's response instead of decorating it.
_REPLACING = frozenset({FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR, FaultKind.UNAUTHORIZED})
_DEFAULT_STATUS = {
    FaultKind.RATE_LIMIT: 429,
    FaultKind.SERVER_ERROR: 503,
    FaultKind.UNAUTHORIZED: 401,
}
# A fixed order keeps the probabilistic draw reproducible for a given seed and call sequence.
_DRAW_ORDER = (
    FaultKind.RATE_LIMIT,
    FaultKind.SERVER_ERROR,
    FaultKind.UNAUTHORIZED,
    FaultKind.TRUNCATED,
    FaultKind.INVALID_JSON,
    FaultKind.LATENCY,
)
# What a misbehaving proxy returns instead of JSON.
_INVALID_BODY = (
    b"<html><head><title>502 Bad Gateway</title></head><body>upstream reset</body></html>"
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault. `status` is the HTTP status for replacing kinds (429, 5xx, 401)."""

    kind: FaultKind
    status: int = 0
    retry_after: int | None = None
    latency_ms: int = 0
    reason: str | None = None

    @property
    def replaces_response(self) -> bool:
        return self.kind in _REPLACING


@dataclass(slots=True)
class _Scheduled:
    fault: Fault
    remaining: int
    path_prefix: str


class FaultPlan:
    """Which calls fail and how: scheduled faults first (FIFO), then seeded random ones.

    `probabilities` maps a kind to its per-call chance; `latency_ms` is added to every call,
    `spike_ms` is the delay of a random LATENCY fault; `retry_after` (seconds) goes on 429 and
    503 answers; `requests_per_second`, when set, makes the simulator enforce a token bucket of
    that size and refill rate, answering 429 when it runs dry.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        probabilities: Mapping[FaultKind, float] | None = None,
        latency_ms: int = 0,
        spike_ms: int = 500,
        retry_after: int = 1,
        server_statuses: tuple[int, ...] = (500, 502, 503),
        requests_per_second: float | None = None,
    ) -> None:
        self.probabilities = dict(probabilities or {})
        self.latency_ms = latency_ms
        self.spike_ms = spike_ms
        self.retry_after = retry_after
        self.server_statuses = server_statuses
        self.requests_per_second = requests_per_second
        self.injected: Counter[FaultKind] = Counter()
        self._rng = random.Random(seed)
        self._scheduled: list[_Scheduled] = []

    def schedule(
        self,
        kind: FaultKind,
        *,
        count: int = 1,
        path_prefix: str = "",
        status: int | None = None,
        retry_after: int | None = None,
        latency_ms: int | None = None,
        reason: str | None = None,
    ) -> FaultPlan:
        """Make the next `count` calls whose path starts with `path_prefix` fail with `kind`."""
        if kind in _REPLACING:
            status = status or _DEFAULT_STATUS[kind]
            if retry_after is None and status in (429, 503):
                retry_after = self.retry_after
        fault = Fault(kind, status or 0, retry_after, latency_ms or 0, reason)
        self._scheduled.append(_Scheduled(fault, count, path_prefix))
        return self

    @property
    def pending(self) -> int:
        """Scheduled faults not yet delivered."""
        return sum(s.remaining for s in self._scheduled)

    def clear(self) -> None:
        self._scheduled.clear()

    def pick(self, path: str) -> Fault | None:
        """The fault for this call, if any (consumes one scheduled fault or one RNG draw)."""
        fault = self._take_scheduled(path) or self._draw()
        if fault is not None:
            self.injected[fault.kind] += 1
        return fault

    def _take_scheduled(self, path: str) -> Fault | None:
        for entry in self._scheduled:
            if entry.remaining > 0 and path.startswith(entry.path_prefix):
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._scheduled.remove(entry)
                return entry.fault
        return None

    def _draw(self) -> Fault | None:
        if not self.probabilities:
            return None
        roll = self._rng.random()
        for kind in _DRAW_ORDER:
            roll -= self.probabilities.get(kind, 0.0)
            if roll < 0:
                return self._random_fault(kind)
        return None

    def _random_fault(self, kind: FaultKind) -> Fault:
        if kind is FaultKind.SERVER_ERROR:
            status = self._rng.choice(self.server_statuses)
            return Fault(kind, status, self.retry_after if status == 503 else None)
        if kind is FaultKind.RATE_LIMIT:
            return Fault(kind, 429, self.retry_after)
        if kind is FaultKind.UNAUTHORIZED:
            return Fault(kind, 401)
        if kind is FaultKind.LATENCY:
            return Fault(kind, latency_ms=self.spike_ms)
        return Fault(kind)


class ApiCallCounter:
    """Calls seen by a simulator, in total and per request path."""

    def __init__(self) -> None:
        self._paths: Counter[str] = Counter()
        self._methods: Counter[str] = Counter()

    def record(self, method: str, path: str) -> None:
        self._paths[path] += 1
        self._methods[method.upper()] += 1

    @property
    def total(self) -> int:
        return self._paths.total()

    def count(self, path_prefix: str = "") -> int:
        """Calls whose path starts with `path_prefix`."""
        return sum(n for path, n in self._paths.items() if path.startswith(path_prefix))

    def count_method(self, method: str) -> int:
        return self._methods[method.upper()]

    def per_path(self) -> dict[str, int]:
        return dict(self._paths)

    def reset(self) -> None:
        self._paths.clear()
        self._methods.clear()

    def snapshot(self) -> dict[str, object]:
        return {"total": self.total, "methods": dict(self._methods), "paths": dict(self._paths)}


class TokenBucket:
    """A burst bucket: `capacity` calls, refilled at `per_second`. Only enforced on request."""

    def __init__(
        self,
        capacity: int,
        per_second: float,
        *,
        enforce: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.per_second = per_second
        self.enforce = enforce
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now

    def take(self) -> bool:
        """Spend one token; False when none is left (the call should be limited if enforced)."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def drain(self) -> None:
        """Empty the bucket, as an injected 429 implies."""
        self._refill()
        self._tokens = 0.0

    @property
    def remaining(self) -> int:
        self._refill()
        return int(self._tokens)

    def seconds_to_token(self) -> float:
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.per_second

    def seconds_to_full(self) -> float:
        self._refill()
        return (self.capacity - self._tokens) / self.per_second


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FaultRenderer = Callable[[web.Request, Fault], web.StreamResponse]
HeaderDecorator = Callable[[web.Request, web.StreamResponse, Fault | None], None]


def fault_middleware(
    *,
    plan: FaultPlan | None,
    counter: ApiCallCounter,
    bucket: TokenBucket,
    render_fault: FaultRenderer,
    decorate: HeaderDecorator,
) -> Middleware:
    """Count the call, apply the plan and the bucket, then let the simulator add its headers."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(SIM_PREFIX):
            return await handler(request)
        counter.record(request.method, request.path)
        fault = plan.pick(request.path) if plan is not None else None
        if not bucket.take() and bucket.enforce and (fault is None or not fault.replaces_response):
            retry = max(1, math.ceil(bucket.seconds_to_token()))
            fault = Fault(FaultKind.RATE_LIMIT, 429, retry)
        if fault is not None and fault.kind is FaultKind.RATE_LIMIT:
            bucket.drain()
        delay = (plan.latency_ms if plan is not None else 0) + (fault.latency_ms if fault else 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if fault is not None and fault.replaces_response:
            response = render_fault(request, fault)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                decorate(request, exc, fault)
                raise
            if fault is not None and isinstance(response, web.Response):
                _damage_body(response, fault.kind)
        decorate(request, response, fault)
        return response

    return middleware


def _damage_body(response: web.Response, kind: FaultKind) -> None:
    body = response.body
    if not isinstance(body, bytes):
        return
    if kind is FaultKind.TRUNCATED:
        response.body = body[: max(1, len(body) // 2)]
    elif kind is FaultKind.INVALID_JSON:
        response.body = _INVALID_BODY


def add_stats_routes(app: web.Application, counter: ApiCallCounter, plan: FaultPlan | None) -> None:
    """`GET /_sim/stats` reports call counts (and injected faults); `DELETE` resets the counts."""

    async def stats(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            counter.reset()
        body = counter.snapshot()
        body["faults"] = {str(k): n for k, n in plan.injected.items()} if plan else {}
        body["pendingFaults"] = plan.pending if plan else 0
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app.router.add_get(SIM_PREFIX + "stats", stats)
    app.router.add_delete(SIM_PREFIX + "stats", stats)
