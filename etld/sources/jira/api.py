"""One Jira site as the steps see it: the API client of an integration, the sync options,
and offset paging. Checkpoints are etld/sources/checkpoints.py's."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from etld.secrets import SecretError, integration_secret
from etld.sources.base import ExtractOutput, StepContext
from etld.sources.http import (
    JIRA_LIMITS,
    ApiClient,
    HttpOptions,
    MalformedResponse,
    open_session,
)
from etld.sources.urlpolicy import UrlPolicy, UrlPolicyError
from etld.workers.errors import Reject

API = "/rest/api/3"
Json = dict[str, Any]


@dataclass(frozen=True)
class JiraOptions:
    """Sync options: integration settings, overridden by the job configuration."""

    projects: tuple[str, ...] = ()  # project keys; empty: every project the account sees
    overlap_minutes: float = 5.0  # incremental window starts this much before the last sync
    search_page_size: int = 100  # Jira's cap when fields or changelogs are asked for
    changelog_batch: int = 100  # cut changelogs completed together (one search + bulk call)
    dev_status_max_issues: int = 5000  # per run
    dev_status_batch: int = 25  # issues per dev-status extraction item

    @classmethod
    def of(cls, ctx: StepContext) -> JiraOptions:
        merged: dict[str, Any] = {**ctx.integration.settings, **ctx.run.config}
        projects = merged.get("projects") or ()
        if isinstance(projects, str):
            projects = [p for p in projects.replace(" ", ",").split(",") if p]
        known = {k: merged[k] for k in cls.__dataclass_fields__ if k in merged and k != "projects"}
        try:
            return cls(projects=tuple(str(p).upper() for p in projects), **known)
        except TypeError as exc:
            raise Reject(f"invalid Jira sync options: {exc}") from None


def jira_client(ctx: StepContext) -> ApiClient:
    """The client for the integration, with Basic auth (account email + API token)."""
    integration = ctx.integration
    try:
        token = integration_secret(
            tenant_id=integration.tenant_id,
            integration_id=integration.id,
            settings=integration.settings,
            credentials=integration.credentials,
            secret_key=ctx.config.security.secret_key,
        )
    except SecretError as exc:
        raise Reject(f"Jira integration {integration.name!r}: {exc}") from None
    if not integration.base_url:
        raise Reject(f"Jira integration {integration.name!r} has no base URL")
    if not integration.username or not token:
        raise Reject(f"Jira integration {integration.name!r} needs a username and an API token")
    basic = base64.b64encode(f"{integration.username}:{token}".encode()).decode()
    try:
        return ApiClient(
            integration.base_url,
            hooks=JIRA_LIMITS,
            headers={"Authorization": f"Basic {basic}"},
            policy=UrlPolicy(integration.allow_private_network),
            options=HttpOptions.from_settings(integration.settings),
        )
    except UrlPolicyError as exc:
        raise Reject(str(exc)) from None


def jira_session(ctx: StepContext, out: ExtractOutput) -> AbstractAsyncContextManager[ApiClient]:
    """An open client whose errors become Reject/Retry and whose calls are reported."""
    return open_session(jira_client(ctx), out)


def expect_object(answer: Any, what: str) -> Json:
    if not isinstance(answer, dict):
        raise MalformedResponse(f"Jira returned a malformed response to {what}: not an object")
    return answer


def expect_list(answer: Any, what: str) -> list[Json]:
    if not isinstance(answer, list) or not all(isinstance(x, dict) for x in answer):
        raise MalformedResponse(f"Jira returned a malformed response to {what}: not a list")
    return answer


async def offset_pages(
    api: ApiClient,
    path: str,
    params: Sequence[tuple[str, str | int]] = (),
    *,
    items: str = "values",
    size: int = 50,
) -> AsyncIterator[Json]:
    """Pages of an endpoint paged by `startAt`/`maxResults` (`isLast` or `total` ends it)."""
    start = 0
    while True:
        page = expect_object(
            await api.get(path, [*params, ("startAt", start), ("maxResults", size)]), path
        )
        values = page.get(items)
        if not isinstance(values, list):
            raise MalformedResponse(f"Jira returned a malformed response to {path}: no '{items}'")
        yield page
        start += len(values)
        total = page.get("total")
        if page.get("isLast") is True or not values:
            return
        if isinstance(total, int) and start >= total:
            return
