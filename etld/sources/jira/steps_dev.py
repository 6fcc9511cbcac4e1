"""The development status step: pull requests Jira's dev-status knows for each issue.

Dev-status answers one issue per call, so the step asks only where it can pay off: issues
the issues step loaded in this run's window (all live issues on a full sync) whose
development summary field reports pull requests. A site that serves no such field (the
simulator, sites without a development integration) leaves the count unknown; those issues
are asked too, most recently updated first, up to `dev_status_max_issues` per run. The root
extraction item only selects the issues and fans out items of `dev_status_batch` issues;
each of those fetches its issues concurrently (bounded by the per-host limiter) and stores
one page `{"issues": {issue id: <answer or null when the issue is gone>}}`.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

from etld.sources.base import ExtractOutput, RawPage, StepContext, TransformOutput
from etld.sources.http import ApiClient, HttpStatusError
from etld.sources.jira.api import JiraOptions, jira_session
from etld.sources.jira.steps_meta import JiraStep
from etld.store.queries import SQL
from etld.workers.errors import Reject

DEV_STATUS = "jira_dev_status"
DETAIL = "/rest/dev-status/1.0/issue/detail"
_PR_URL = re.compile(r"^https?://[^/]+/([^/]+/[^/]+)/pulls?/(\d+)")
Json = dict[str, Any]


async def load_dev_status(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    """Replace the dev-status links of the page's issues with the pull requests it lists."""
    issues = page.payload.get("issues") if isinstance(page.payload, dict) else None
    if not isinstance(issues, dict):
        raise Reject(f"raw page {page.id} ({page.type}): expected {{'issues': {{id: answer}}}}")
    links = [link for issue_id, answer in issues.items() for link in pr_links(issue_id, answer)]
    async with ctx.pool.acquire() as conn:
        await conn.execute(
            SQL["jira.replace_dev_links"],
            ctx.run.tenant_id,
            ctx.integration.id,
            [str(i) for i in issues],
            links,
        )
    return len(links)


class DevStatusStep(JiraStep):
    name = "jira_dev_status"
    display_name = "Development Status"
    loaders = {DEV_STATUS: load_dev_status}

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        issue_ids = message.get("issue_ids")
        if issue_ids is None:
            await self._fan_out(ctx, out)
            return
        if not isinstance(issue_ids, list):
            raise Reject("dev-status item without a list of issue ids")
        async with jira_session(ctx, out) as api:
            answers: dict[str, Any] = {}
            try:
                async with asyncio.TaskGroup() as group:
                    for issue_id in issue_ids:
                        group.create_task(_fetch(api, str(issue_id), answers))
            except ExceptionGroup as failed:
                # The first failure says it all (a rate limit, refused credentials ...); the
                # stage maps single client errors, not groups of them.
                raise _first(failed) from None
        batch = int(message.get("batch", 0))
        payload = {"issues": {str(i): answers.get(str(i)) for i in issue_ids}}
        await out.store_page(DEV_STATUS, payload, f"b{batch:05d}", item_count=len(issue_ids))

    async def _fan_out(self, ctx: StepContext, out: ExtractOutput) -> None:
        opts = JiraOptions.of(ctx)
        run = ctx.run
        since = None
        if not run.full_sync and run.last_sync_date is not None:
            since = run.last_sync_date - timedelta(minutes=opts.overlap_minutes)
        async with ctx.pool.acquire() as conn:
            rows = await conn.fetch(
                SQL["jira.dev_status_candidates"],
                run.tenant_id,
                ctx.integration.id,
                since,
                opts.dev_status_max_issues,
            )
        ids = [r["external_id"] for r in rows]
        size = max(1, opts.dev_status_batch)
        for n, start in enumerate(range(0, len(ids), size)):
            await out.follow_up(f"b{n:05d}", {"issue_ids": ids[start : start + size], "batch": n})


def _first(group: BaseExceptionGroup[Exception]) -> Exception:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _fetch(api: ApiClient, issue_id: str, answers: dict[str, Any]) -> None:
    params: list[tuple[str, str | int]] = [
        ("issueId", issue_id),
        ("applicationType", "GitHub"),
        ("dataType", "pullrequest"),
    ]
    try:
        answers[issue_id] = await api.get(DETAIL, params)
    except HttpStatusError as exc:
        if exc.status != 404:  # 404: the issue was deleted since it was selected
            raise


def pr_links(issue_id: str, answer: Any) -> list[Json]:
    """(issue, repository, number, url) of each pull request in a dev-status answer."""
    if not isinstance(answer, dict) or not isinstance(answer.get("detail"), list):
        return []
    out = []
    for detail in answer["detail"]:
        prs = detail.get("pullRequests") if isinstance(detail, dict) else None
        for pr in prs if isinstance(prs, list) else ():
            if not isinstance(pr, dict):
                continue
            url = str(pr.get("url") or "")
            found = _PR_URL.match(url)
            if found:
                repository, number = found.group(1), int(found.group(2))
            else:
                repository = str(pr.get("repositoryName") or "")
                digits = str(pr.get("id") or "").lstrip("#")
                if not repository or not digits.isdigit():
                    continue
                number = int(digits)
            out.append(
                {
                    "issue_id": str(issue_id),
                    "repository": repository,
                    "number": number,
                    "url": url or None,
                }
            )
    return out
