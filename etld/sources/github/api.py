"""One GitHub account as the steps see it: the sync options, the API client with the
integration's tokens, and lists followed page by page along `Link` with conditional
requests. Checkpoints are etld/sources/checkpoints.py's.

Conditional requests: every stored answer's ETag is kept per URL (`Etags`, in PostgreSQL),
with what a later 304 needs in its place: the next page and, for lists the scan reads, the
items in short. An unchanged resource then costs a bodyless 304 that GitHub does not charge
to the rate limit, and nothing is stored or transformed again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from yarl import URL

from etld.secrets import SecretError, integration_secret
from etld.sources.base import ExtractOutput, StepContext
from etld.sources.http import (
    GITHUB_LIMITS,
    ApiClient,
    ApiPage,
    HttpOptions,
    MalformedResponse,
    open_session,
)
from etld.sources.urlpolicy import UrlPolicy, UrlPolicyError
from etld.store.queries import SQL
from etld.workers.errors import Reject

DEFAULT_BASE_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
COMMITS_CAP = 250  # GitHub lists at most this many commits of a pull request
Json = dict[str, Any]
_TOKEN_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class GitHubOptions:
    """Sync options: integration settings, overridden by the job configuration."""

    repositories: tuple[str, ...] = ()  # owner/name; empty: the organization's or user's
    organization: str | None = None
    user: str | None = None  # another user's public repositories; none: the token's own
    overlap_minutes: float = 5.0  # incremental window starts this much before the last sync
    per_page: int = 100  # GitHub's maximum
    batch_size: int = 50  # pull requests per extraction item of details
    details_per_page: int = 10  # pull requests per stored details page
    pull_details: bool = False  # GET /pulls/{n} for each (sizes) at one more call apiece
    conditional_requests: bool = True

    @classmethod
    def of(cls, ctx: StepContext) -> GitHubOptions:
        merged: dict[str, Any] = {**ctx.integration.settings, **ctx.run.config}
        repos = merged.get("repositories") or ()
        if isinstance(repos, str):
            repos = [r for r in _TOKEN_SPLIT.split(repos) if r]
        known = {
            k: merged[k] for k in cls.__dataclass_fields__ if k in merged and k != "repositories"
        }
        try:
            opts = cls(repositories=tuple(str(r).strip("/") for r in repos), **known)
        except TypeError as exc:
            raise Reject(f"invalid GitHub sync options: {exc}") from None
        if any(r.count("/") != 1 for r in opts.repositories):
            raise Reject(f"GitHub repositories must be given as owner/name: {opts.repositories}")
        return opts

    @property
    def page_size(self) -> int:
        return max(1, min(self.per_page, 100))


def window_start(ctx: StepContext, opts: GitHubOptions) -> datetime | None:
    """Where an incremental run's window starts; None for a full sync."""
    run = ctx.run
    if run.full_sync or run.last_sync_date is None:
        return None
    return run.last_sync_date - timedelta(minutes=opts.overlap_minutes)


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.utcoffset() is not None else None


def github_client(ctx: StepContext) -> ApiClient:
    """The client for the integration: every token of its secret, used in turn."""
    integration = ctx.integration
    try:
        secret = integration_secret(
            tenant_id=integration.tenant_id,
            integration_id=integration.id,
            settings=integration.settings,
            credentials=integration.credentials,
            secret_key=ctx.config.security.secret_key,
        )
    except SecretError as exc:
        raise Reject(f"GitHub integration {integration.name!r}: {exc}") from None
    # Several tokens may be given, separated by commas or white space.
    tokens = [t for t in _TOKEN_SPLIT.split(secret or "") if t]
    if not tokens:
        raise Reject(f"GitHub integration {integration.name!r} needs an access token")
    try:
        return ApiClient(
            integration.base_url or DEFAULT_BASE_URL,
            hooks=GITHUB_LIMITS,
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
            policy=UrlPolicy(integration.allow_private_network),
            options=HttpOptions.from_settings(integration.settings),
            tokens=tokens,
        )
    except UrlPolicyError as exc:
        raise Reject(str(exc)) from None


def github_session(ctx: StepContext, out: ExtractOutput) -> AbstractAsyncContextManager[ApiClient]:
    """An open client whose errors become Reject/Retry and whose calls are reported."""
    return open_session(github_client(ctx), out)


def first_error(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first failure of a task group: one client error says it all (a rate limit ...)."""
    first = group.exceptions[0]
    return first_error(first) if isinstance(first, BaseExceptionGroup) else first


# -- conditional list pages --------------------------------------------------------------------


@dataclass(frozen=True)
class Known:
    etag: str
    meta: Json


class Etags:
    """The ETags of stored answers, per URL; the `conditional_requests` option turns them off."""

    def __init__(self, pool: asyncpg.Pool, integration_id: int, enabled: bool) -> None:
        self.pool = pool
        self.integration_id = integration_id
        self.enabled = enabled
        self._known: dict[str, Known | None] = {}

    async def prefetch(self, urls: Sequence[str]) -> None:
        wanted = [u for u in urls if u not in self._known]
        if not self.enabled or not wanted:
            return
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(SQL["github.get_etags"], self.integration_id, wanted)
        self._known.update(dict.fromkeys(wanted))
        self._known.update({r["url"]: Known(r["etag"], dict(r["meta"])) for r in rows})

    async def lookup(self, url: str) -> Known | None:
        await self.prefetch([url])
        return self._known.get(url)

    async def save(self, entries: Sequence[tuple[str, str, Json]]) -> None:
        """Record (url, etag, meta) of answers whose pages are stored."""
        if not self.enabled or not entries:
            return
        rows = [{"url": u, "etag": e, "meta": m} for u, e, m in entries]
        async with self.pool.acquire() as conn:
            await conn.execute(SQL["github.put_etags"], self.integration_id, rows)
        self._known.update({u: Known(e, m) for u, e, m in entries})


@dataclass(frozen=True)
class Listed:
    """One page of a list: its items, or None when the server said 304 (see `known`)."""

    url: str
    answer: ApiPage
    items: list[Json] | None
    next: str | None
    known: Known | None

    def entry(self, **meta: Any) -> tuple[str, str, Json] | None:
        """What to record once this page is stored (None for 304s and answers without ETag)."""
        if self.items is None or not self.answer.etag:
            return None
        return self.url, self.answer.etag, {"next": self.next, "count": len(self.items), **meta}


def expect_list(answer: Any, what: str) -> list[Json]:
    if not isinstance(answer, list) or not all(isinstance(x, dict) for x in answer):
        raise MalformedResponse(f"GitHub returned a malformed response to {what}: not a list")
    return answer


async def fetch_list(api: ApiClient, etags: Etags, url: str) -> Listed:
    known = await etags.lookup(url)
    answer = await api.get_page(url, etag=known.etag if known else None)
    if answer.not_modified and known is not None:
        return Listed(url, answer, None, known.meta.get("next") or _after(url, known.meta), known)
    items = expect_list(answer.data, url)
    return Listed(url, answer, items, answer.links.get("next"), known)


@dataclass
class Pages:
    """Every page of one list: the answers that came with a body, whether that is all of it
    (no page answered 304), how many items it holds, and the ETags to record."""

    answers: list[list[Json]] = field(default_factory=list)
    complete: bool = True
    count: int = 0
    entries: list[tuple[str, str, Json]] = field(default_factory=list)


async def all_pages(api: ApiClient, etags: Etags, url: str) -> Pages:
    """Every page of the list starting at `url`, along `Link`."""
    out = Pages()
    next_url: str | None = url
    while next_url is not None:
        listed = await fetch_list(api, etags, next_url)
        if listed.items is None:
            out.complete = False
            out.count += int(listed.known.meta.get("count") or 0) if listed.known else 0
        else:
            out.answers.append(listed.items)
            out.count += len(listed.items)
            entry = listed.entry()
            if entry is not None:
                out.entries.append(entry)
        next_url = listed.next
    return out


def _after(url: str, meta: Mapping[str, Any]) -> str | None:
    """A full page that was the last one may have a successor by now, while its own body,
    and so its ETag, stayed the same: ask for the next page number."""
    parsed = URL(url)
    size = int(parsed.query.get("per_page", "30"))
    if int(meta.get("count") or 0) < size:
        return None
    page = int(parsed.query.get("page", "1"))
    return str(parsed.update_query(page=page + 1))


def list_url(api: ApiClient, path: str, params: Sequence[tuple[str, str | int]]) -> str:
    return str(api.url(path).update_query(params))
