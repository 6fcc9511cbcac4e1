"""A rate-limited JSON API client shared by the sources (Jira now, GitHub next).

One `ApiClient` per integration and extraction item: an aiohttp session whose connector
checks every resolved address against the URL policy, timeouts, retries with exponential
backoff on network errors and 5xx, and a limiter per host shared by every client of the
process, so concurrent requests to an API that asked us to slow down all wait, instead of
each finding out by itself. Waits the API asks for are taken in place when short; a longer
wait raises `RateLimited`, which the stage handler turns into a delayed retry of the message
rather than a handler asleep for minutes. Responses are read in chunks up to a size cap.

Providers differ only in how they say "slow down" and "wrong credentials": `HeaderLimits`
(`JIRA_LIMITS`, `GITHUB_LIMITS`; a provider with other habits overrides its methods).
`stage_errors()` maps the client's errors onto the runner's outcomes: `Reject` for what
retrying cannot fix, `Retry` for a requested wait.

Two GitHub habits are opt-in for any provider. `tokens`: several credentials of one
integration used in turn; a token out of calls rests until its reset while the others carry
on, and only when all rest does the client wait. `get_page`: a GET that returns its headers'
ETag and `Link` targets and, given the ETag of an earlier answer, sends `If-None-Match`, so an
unchanged resource costs a 304 without a body (GitHub does not charge those to the limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDictProxy
from yarl import URL

from etld.errors import EtldError, redact_url
from etld.logs import get_logger
from etld.sources.urlpolicy import PolicyResolver, UrlPolicy, UrlPolicyError
from etld.workers.errors import Reject, Retry

log = get_logger(__name__)

MiB = 1024 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TRANSIENT_4XX = frozenset({408, 425})
Params = Mapping[str, str | int] | Sequence[tuple[str, str | int]] | None


class ApiError(EtldError):
    """A request failed; subclasses say whether retrying can help."""


class AuthError(ApiError):
    """The API refused the credentials (401/403): retrying only burns attempts."""


class MalformedResponse(ApiError):
    """A 2xx answer that is not the JSON the API promises."""


class ResponseTooLarge(ApiError):
    """The answer exceeds `max_response_bytes`; nothing beyond the cap was read."""


class HttpStatusError(ApiError):
    """A 4xx the caller may handle (404 of an optional endpoint, 400 of a bad query)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TransientError(ApiError):
    """Network errors or 5xx outlasting the client's own retries; the runner retries later."""


class RateLimited(ApiError):
    """The API asked for a wait longer than worth taking inside a handler."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


@contextlib.contextmanager
def stage_errors() -> Iterator[None]:
    """Translate client errors into the stage runner's outcomes (see module docstring)."""
    try:
        yield
    except RateLimited as exc:
        raise Retry(delay=exc.delay, reason=str(exc), count=False) from exc
    except (AuthError, MalformedResponse, ResponseTooLarge, HttpStatusError, UrlPolicyError) as exc:
        raise Reject(str(exc)) from exc


class CallReport(Protocol):
    def count_api_calls(self, calls: int) -> None: ...


@contextlib.asynccontextmanager
async def open_session(client: ApiClient, out: CallReport) -> AsyncIterator[ApiClient]:
    """An open client whose errors become Reject/Retry and whose calls are reported to `out`.

    Every source's extraction uses its client this way, so a failed step still reports
    the calls it made.
    """
    try:
        with stage_errors():
            async with client:
                yield client
    finally:
        out.count_api_calls(client.calls)


# -- provider hooks ------------------------------------------------------------------------------


def retry_after(headers: CIMultiDictProxy[str], now: float) -> float | None:
    """`Retry-After` in seconds (given as seconds or as an HTTP date)."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class HeaderLimits:
    """Provider hooks: limits told by a remaining-calls header and a reset time (ISO or epoch).

    Jira: 429 + Retry-After, `X-RateLimit-Remaining`, ISO `X-RateLimit-Reset`. GitHub: the
    same on `x-ratelimit-*` with an epoch reset, and a 403 that is a limit, not a refusal,
    when nothing remains or a Retry-After comes with it; secondary limits without a header
    need at least a minute.
    """

    label: str
    default_wait: float
    remaining: str = "X-RateLimit-Remaining"
    reset: str = "X-RateLimit-Reset"
    reset_is_epoch: bool = False
    forbidden_may_be_limit: bool = False
    # A 403 whose body says this is a limit even without headers (GitHub's secondary limits).
    limit_phrase: bytes = b""
    # Limits announced by no header wait default_wait, doubling while they keep coming.
    escalate: bool = False

    def limited(self, status: int, headers: CIMultiDictProxy[str]) -> bool:
        if status == 429:
            return True
        return (
            self.forbidden_may_be_limit
            and status == 403
            and (headers.get(self.remaining) == "0" or "Retry-After" in headers)
        )

    def limited_by_body(self, status: int, data: bytes) -> bool:
        return (
            self.forbidden_may_be_limit
            and status == 403
            and bool(self.limit_phrase)
            and self.limit_phrase in data[:2000].lower()
        )

    def auth_failed(self, status: int, headers: CIMultiDictProxy[str]) -> bool:
        return status == 401 or (status == 403 and not self.limited(status, headers))

    def exhausted_for(self, headers: CIMultiDictProxy[str], now: float) -> float | None:
        if headers.get(self.remaining, "").strip() != "0":
            return None
        reset = headers.get(self.reset)
        try:
            if self.reset_is_epoch:
                return max(0.0, float(reset or "") - now)
            return max(0.0, datetime.fromisoformat(reset or "").timestamp() - now)
        except ValueError:
            return self.default_wait


JIRA_LIMITS = HeaderLimits("Jira", default_wait=5.0)
GITHUB_LIMITS = HeaderLimits(
    "GitHub",
    default_wait=60.0,
    remaining="x-ratelimit-remaining",
    reset="x-ratelimit-reset",
    reset_is_epoch=True,
    forbidden_may_be_limit=True,
    limit_phrase=b"rate limit",
    escalate=True,
)
_MAX_ESCALATION = 4  # doublings: a limit without headers waits at most 16 x default_wait


# -- options and the shared per-host limiter -----------------------------------------------------


@dataclass(frozen=True)
class HttpOptions:
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    # Longer waits become a delayed retry of the message instead of a sleeping handler.
    max_inline_wait: float = 5.0
    max_response_bytes: int = 64 * MiB
    per_host_concurrency: int = 4
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> HttpOptions:
        """Options from an integration's `settings["http"]`; unknown keys are ignored."""
        raw = settings.get("http") or {}
        if not isinstance(raw, Mapping):
            return cls()
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        if "max_response_mib" in raw:
            known["max_response_bytes"] = int(float(raw["max_response_mib"]) * MiB)
        return cls(**known)


class HostLimiter:
    """Concurrency and "wait until" for one host, shared by every client in the process,
    with the rest period of each token used against it."""

    def __init__(self, concurrency: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.blocked_until = 0.0  # time.monotonic()
        self.strikes = 0  # limits in a row that announced no wait (escalating hooks only)
        self.resting: dict[str, float] = {}  # token fingerprint -> time.monotonic() it may go
        self.turn = 0

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)

    def wait_needed(self) -> float:
        return max(0.0, self.blocked_until - time.monotonic())

    def rest(self, token: str, seconds: float) -> None:
        key = fingerprint(token)
        self.resting[key] = max(self.resting.get(key, 0.0), time.monotonic() + seconds)

    def pick(self, tokens: Sequence[str]) -> tuple[str, float]:
        """The next token in turn that is not resting (wait 0), else the one back soonest."""
        now = time.monotonic()
        self.turn += 1
        order = [tokens[(self.turn + i) % len(tokens)] for i in range(len(tokens))]
        waits = [max(0.0, self.resting.get(fingerprint(t), 0.0) - now) for t in order]
        best = min(range(len(order)), key=lambda i: (waits[i] > 0, waits[i]))
        return order[best], waits[best]


def fingerprint(token: str) -> str:
    """What the limiter keys a token by, so the shared state holds no credentials."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# Keyed by event loop: asyncio primitives must not cross loops (tests run one loop per test).
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, HostLimiter]] = (
    weakref.WeakKeyDictionary()
)


def host_limiter(host: str, concurrency: int) -> HostLimiter:
    per_loop = _LIMITERS.setdefault(asyncio.get_running_loop(), {})
    if host not in per_loop:
        per_loop[host] = HostLimiter(concurrency)
    return per_loop[host]


# -- the client ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A decoded JSON answer and the exact bytes it was decoded from."""

    value: Any
    text: bytes


@dataclass(frozen=True)
class ApiPage:
    """A conditional GET's answer: `data` is None when the server said 304 Not Modified."""

    url: str  # where the answer came from, after redirects
    status: int
    data: Any
    etag: str | None
    links: dict[str, str]  # rel -> absolute URL, from the `Link` header

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def parse_links(header: str | None, base: URL) -> dict[str, str]:
    """`<url>; rel="next", <url>; rel="last"` as {"next": url, "last": url}."""
    out: dict[str, str] = {}
    for part in (header or "").split(","):
        target, _, params = part.strip().partition(";")
        target = target.strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel":
                for rel in value.strip().strip('"').split():
                    out[rel] = str(base.join(URL(target[1:-1])))
    return out


class ApiClient:
    """JSON over HTTP for one integration; use as `async with ApiClient(...) as api:`."""

    def __init__(
        self,
        base_url: str,
        *,
        hooks: HeaderLimits,
        headers: Mapping[str, str] | None = None,
        policy: UrlPolicy | None = None,
        options: HttpOptions | None = None,
        resolver: AbstractResolver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tokens: Sequence[str] = (),
        auth_scheme: str = "Bearer",
        credential_headers: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.hooks = hooks
        self.policy = policy if policy is not None else UrlPolicy()
        self.options = options if options is not None else HttpOptions()
        self.base = self.policy.check_url(self.base_url)
        self.calls = 0
        self._headers = dict(headers or {})
        self._tokens = tuple(tokens)
        self._auth_scheme = auth_scheme
        # Dropped, like Authorization, when a redirect leaves the configured origin.
        self._private = frozenset({"authorization", *(h.lower() for h in credential_headers)})
        self._resolver = resolver
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._limiter: HostLimiter | None = None

    async def __aenter__(self) -> ApiClient:
        opts = self.options
        connector = aiohttp.TCPConnector(
            resolver=PolicyResolver(self.policy, self._resolver),
            limit_per_host=opts.per_host_concurrency,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=opts.timeout, connect=opts.connect_timeout, sock_read=opts.timeout
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Accept": "application/json", "User-Agent": "etld"},
        )
        self._limiter = host_limiter(
            f"{self.base.host}:{self.base.port}", opts.per_host_concurrency
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, path: str, params: Params = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any, params: Params = None) -> Any:
        return await self.request("POST", path, params=params, body=body)

    async def post_verbatim(self, path: str, body: Any, params: Params = None) -> Verbatim:
        """A POST's decoded answer together with the bytes it came as, to store verbatim."""
        url, what = self._target("POST", path, params)
        _, _, data, _ = await self._exchange("POST", url, what, orjson.dumps(body), {})
        return Verbatim(self._decode(what, data), data)

    def url(self, path: str) -> URL:
        """An absolute URL: paths are joined to the base URL, absolute URLs kept."""
        if path.startswith(("http://", "https://")):
            return URL(path)
        return URL(self.base_url + "/" + path.lstrip("/"))

    async def request(
        self, method: str, path: str, *, params: Params = None, body: Any = None
    ) -> Any:
        """The decoded JSON answer of one logical request (retries and redirects included)."""
        url, what = self._target(method, path, params)
        payload = orjson.dumps(body) if body is not None else None
        _, _, data, _ = await self._exchange(method, url, what, payload, {})
        return self._decode(what, data)

    async def get_page(
        self, path: str, params: Params = None, *, etag: str | None = None
    ) -> ApiPage:
        """A GET with its ETag and Link targets; with `etag`, a 304 answer has no data."""
        url, what = self._target("GET", path, params)
        extra = {"If-None-Match": etag} if etag else {}
        status, headers, data, final = await self._exchange("GET", url, what, None, extra)
        links = parse_links(headers.get("Link"), final)
        if status == 304:
            return ApiPage(str(final), status, None, headers.get("ETag") or etag, links)
        return ApiPage(str(final), status, self._decode(what, data), headers.get("ETag"), links)

    def _target(self, method: str, path: str, params: Params) -> tuple[URL, str]:
        if self._session is None or self._limiter is None:
            raise RuntimeError("ApiClient used outside `async with`")
        url = self.url(path)
        if params:
            url = url.update_query(params)
        return url, f"{method} {redact_url(str(url))}"

    async def _exchange(
        self, method: str, url: URL, what: str, payload: bytes | None, extra: dict[str, str]
    ) -> tuple[int, CIMultiDictProxy[str], bytes, URL]:
        """Status, headers, body and final URL of a usable answer, after retries and waits."""
        assert self._limiter is not None
        failures = limited = 0
        while True:
            token = await self._await_budget(what)
            headers = dict(extra)
            if token is not None:
                headers["Authorization"] = f"{self._auth_scheme} {token}"
            try:
                async with self._limiter.slots:
                    status, answer, data, final = await self._send(method, url, payload, headers)
            except UrlPolicyError as exc:
                raise UrlPolicyError(redact_url(str(url)), exc.rule) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
                if failures > self.options.max_retries:
                    raise TransientError(
                        f"{self.hooks.label} request failed: {what}: {reason}"
                    ) from exc
                await self._sleep(self._backoff(failures))
                continue
            outcome = self._judge(what, status, answer, data, failures, limited, token)
            if outcome is None:
                return status, answer, data, final
            kind, wait = outcome
            if kind == "limited":
                limited += 1
            else:
                failures += 1
                await self._sleep(wait)

    def _judge(
        self,
        what: str,
        status: int,
        headers: CIMultiDictProxy[str],
        data: bytes,
        failures: int,
        limited: int,
        token: str | None = None,
    ) -> tuple[str, float] | None:
        """None for a usable answer; ("limited" | "failed", seconds to wait) to try again;
        raises when trying again cannot help or the wait is too long to take here."""
        label, opts = self.hooks.label, self.options
        assert self._limiter is not None
        now = time.time()
        exhausted = self.hooks.exhausted_for(headers, now)
        if exhausted is not None and token is not None:
            # Calls are counted per token: this one rests, the others carry on.
            self._limiter.rest(token, max(exhausted, 1.0))
        elif exhausted:
            self._limiter.block(exhausted)
        if self.hooks.limited(status, headers) or self.hooks.limited_by_body(status, data):
            announced = retry_after(headers, now)
            if token is not None and exhausted is not None and not announced:
                log.info("rate limited, token rests", request=what, wait=round(exhausted, 2))
                if limited >= opts.max_retries + len(self._tokens):
                    raise RateLimited(
                        f"{label} rate limit: {what} asked to wait {exhausted:.0f}s", exhausted
                    )
                return "limited", 0.0  # _await_budget takes the next token or waits for one
            delay = announced or exhausted or self._unannounced_wait()
            self._limiter.block(delay)  # every request to the host waits, not just this one
            log.info("rate limited", request=what, wait=round(delay, 2))
            if delay > opts.max_inline_wait or limited >= opts.max_retries:
                raise RateLimited(f"{label} rate limit: {what} asked to wait {delay:.0f}s", delay)
            return "limited", delay
        if status < 400:
            self._limiter.strikes = 0
        if self.hooks.auth_failed(status, headers):
            raise AuthError(f"{label} rejected the credentials for {self.base_url}")
        if status >= 500 or status in _TRANSIENT_4XX:
            wait = retry_after(headers, now) or self._backoff(failures + 1)
            message = f"{label} answered {status} to {what}"
            if failures >= opts.max_retries:
                raise TransientError(message)
            if wait > opts.max_inline_wait:
                raise RateLimited(f"{message}, asked to wait {wait:.0f}s", wait)
            return "failed", wait
        if status >= 400:
            raise HttpStatusError(f"{label} answered {status} to {what}: {_snippet(data)}", status)
        return None

    def _decode(self, what: str, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(
                f"{self.hooks.label} returned a malformed response to {what}: "
                f"invalid JSON ({exc}); body starts {_snippet(data)}"
            ) from None

    def _unannounced_wait(self) -> float:
        """A limit that named no wait: the hooks' default, doubled per such limit in a row."""
        assert self._limiter is not None
        if not self.hooks.escalate:
            return self.hooks.default_wait
        wait = self.hooks.default_wait * 2.0 ** min(self._limiter.strikes, _MAX_ESCALATION)
        self._limiter.strikes += 1
        return wait

    async def _await_budget(self, what: str) -> str | None:
        """Wait out the host's block (and pick a token, waiting for one to be back if all
        rest); raises RateLimited when that is longer than worth waiting here."""
        assert self._limiter is not None
        wait = self._limiter.wait_needed()
        token = None
        if self._tokens:
            token, resting = self._limiter.pick(self._tokens)
            wait = max(wait, resting)
        if wait > self.options.max_inline_wait:
            raise RateLimited(f"{self.hooks.label} rate limit: {what} must wait {wait:.0f}s", wait)
        if wait > 0:
            await self._sleep(wait)
        return token

    def _backoff(self, failures: int) -> float:
        base = min(self.options.backoff_cap, self.options.backoff_base * 2.0 ** (failures - 1))
        return base * random.uniform(0.5, 1.0)  # jitter: concurrent clients do not sync up

    async def _send(
        self, method: str, url: URL, payload: bytes | None, extra: Mapping[str, str] | None = None
    ) -> tuple[int, CIMultiDictProxy[str], bytes, URL]:
        """One request, following redirects hop by hop, each hop checked by the policy."""
        assert self._session is not None
        headers = {**self._headers, **(extra or {})}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for _ in range(self.options.max_redirects + 1):
            self.policy.check_url(url)
            self.calls += 1
            async with self._session.request(
                method, url, data=payload, headers=headers, allow_redirects=False
            ) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    target = url.join(URL(location))
                    if target.origin() != url.origin():
                        # Credentials belong to the configured host only.
                        headers = {
                            k: v for k, v in headers.items() if k.lower() not in self._private
                        }
                    if response.status == 303 or (
                        response.status in (301, 302) and method == "POST"
                    ):
                        method, payload = "GET", None
                        headers.pop("Content-Type", None)
                    url = target
                    continue
                return response.status, response.headers, await self._read(response, url), url
        raise TransientError(
            f"{self.hooks.label}: more than {self.options.max_redirects} redirects"
        )

    async def _read(self, response: aiohttp.ClientResponse, url: URL) -> bytes:
        cap = self.options.max_response_bytes
        declared = response.content_length
        if declared is not None and declared > cap:
            raise ResponseTooLarge(self._too_large(url, cap, f"declares {declared} bytes"))
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            total += len(chunk)
            if total > cap:
                raise ResponseTooLarge(self._too_large(url, cap, "exceeded it while reading"))
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, url: URL, cap: int, how: str) -> str:
        return (
            f"{self.hooks.label} response to {redact_url(str(url))} is larger than the "
            f"{cap} byte limit ({how}); raise settings.http.max_response_mib to accept it"
        )


def _snippet(data: bytes, limit: int = 200) -> str:
    text = data[:limit].decode("utf-8", "replace").replace("\n", " ").strip()
    return repr(text + ("…" if len(data) > limit else ""))
