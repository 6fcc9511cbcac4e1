"""The comments step: review comments and conversation comments of the pull requests.

Both come from repository-wide lists (`/pulls/comments`, `/issues/comments`), oldest update
first and, on an incremental run, only those updated since the window starts (`since`): one
call per hundred comments of the repository instead of two calls per pull request. The
conversation list also holds comments on plain issues; they name an issue, not a pull
request, and the transform leaves them out. The step runs after the pull requests are
loaded, so every comment finds its pull request's row; a comment on a pull request opened
after the scan is picked up by the next run, whose window reaches back to this run's start.
Deleted comments are not noticed: no list tells of them.

A webhook run (`targets` in its configuration) reads instead, for each pull request the pull
requests step found, every page of its own two lists (`/pulls/{n}/comments`,
`/issues/{n}/comments`), with no window (see `targets`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from etld.sources.base import ExtractOutput, RawPage, StepContext, TransformOutput
from etld.sources.checkpoints import load_checkpoint, save_checkpoint
from etld.sources.github.api import (
    Etags,
    GitHubOptions,
    Json,
    fetch_list,
    first_error,
    github_session,
    list_url,
    parse_time,
    window_start,
)
from etld.sources.github.steps_repos import GitHubStep, run_repositories
from etld.sources.github.targets import found_pulls, targeted
from etld.sources.github.transform_pulls import finish
from etld.sources.http import ApiClient, HttpStatusError
from etld.store.queries import SQL
from etld.workers.errors import Reject

REVIEW_COMMENTS = "github_review_comments"
ISSUE_COMMENTS = "github_issue_comments"
STEP = "github_comments"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# (kind stored in pr_comments, list path, page type, the field naming the pull request)
KINDS = (
    ("review", "/pulls/comments", REVIEW_COMMENTS, "pull_request_url"),
    ("issue", "/issues/comments", ISSUE_COMMENTS, "issue_url"),
)


class CommentsStep(GitHubStep):
    name = STEP
    display_name = "Comments"

    def __init__(self) -> None:
        self.loaders = {REVIEW_COMMENTS: load_comments, ISSUE_COMMENTS: load_comments}

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        opts = GitHubOptions.of(ctx)
        etags = Etags(ctx.pool, ctx.integration.id, opts.conditional_requests)
        if targeted(ctx.run.config):  # a webhook run: the comments of the pull requests named
            await self._targeted(ctx, out, etags, opts)
            return
        cp = await load_checkpoint(ctx.pool, ctx.run.run_id, STEP)
        if cp is None:
            since = window_start(ctx, opts)
            cp = {
                "repos": await run_repositories(ctx),
                "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if since else None,
                "repo": 0,
                "kind": 0,
                "url": None,
                "page": 0,
            }
        async with github_session(ctx, out) as api:
            while cp["repo"] < len(cp["repos"]):
                repo = cp["repos"][cp["repo"]]
                kind, path, type_, _ = KINDS[cp["kind"]]
                params: list[tuple[str, str | int]] = [
                    ("sort", "updated"),
                    ("direction", "asc"),
                    ("per_page", opts.page_size),
                    ("page", 1),
                ]
                if cp["since"]:
                    params.append(("since", cp["since"]))
                url = cp["url"] or list_url(api, f"/repos/{repo['full_name']}{path}", params)
                listed = await fetch_list(api, etags, url)
                if listed.items:  # an empty page (nothing since the window) is not kept
                    key = f"r{repo['id']}:{kind}:p{cp['page']}"
                    payload = {"repository": repo, "comments": listed.items}
                    await out.store_page(type_, payload, key, item_count=len(listed.items))
                entry = listed.entry()
                if entry is not None:
                    await etags.save([entry])
                if listed.next is not None:
                    cp["url"], cp["page"] = listed.next, cp["page"] + 1
                elif cp["kind"] + 1 < len(KINDS):
                    cp["kind"], cp["url"], cp["page"] = cp["kind"] + 1, None, 0
                else:
                    cp["repo"], cp["kind"], cp["url"], cp["page"] = cp["repo"] + 1, 0, None, 0
                await save_checkpoint(ctx.pool, ctx.run.run_id, STEP, cp)

    async def _targeted(
        self, ctx: StepContext, out: ExtractOutput, etags: Etags, opts: GitHubOptions
    ) -> None:
        pulls = await found_pulls(ctx)
        cp = await load_checkpoint(ctx.pool, ctx.run.run_id, STEP) or {"index": 0}
        size = max(1, opts.details_per_page)
        async with github_session(ctx, out) as api:
            while cp["index"] < len(pulls):
                start = cp["index"]
                chunk = pulls[start : start + size]
                try:
                    async with asyncio.TaskGroup() as group:
                        tasks = [
                            group.create_task(_pull_comments(api, etags, opts, pull, kind))
                            for pull in chunk
                            for kind in KINDS
                        ]
                except ExceptionGroup as failed:
                    raise first_error(failed) from None
                entries: list[tuple[str, str, Json]] = []
                for task in tasks:
                    pages, found = task.result()
                    for key, type_, payload in pages:
                        count = len(payload["comments"])
                        await out.store_page(type_, payload, key, item_count=count)
                    entries += found
                await etags.save(entries)
                cp["index"] = start + len(chunk)
                await save_checkpoint(ctx.pool, ctx.run.run_id, STEP, cp)


async def _pull_comments(
    api: ApiClient, etags: Etags, opts: GitHubOptions, pull: Json, kind: tuple[str, str, str, str]
) -> tuple[list[tuple[str, str, Json]], list[tuple[str, str, Json]]]:
    """Every page of one pull request's review or conversation comments: the pages to store
    (key, type, payload) and the ETags to record once they are."""
    name, path, type_, _ = kind
    repo, number = pull["repository"], pull["number"]
    owner = path.rsplit("/", 1)[0]  # /pulls/comments -> /pulls/{n}/comments
    params: list[tuple[str, str | int]] = [("per_page", opts.page_size), ("page", 1)]
    url: str | None = list_url(api, f"/repos/{repo['full_name']}{owner}/{number}/comments", params)
    pages: list[tuple[str, str, Json]] = []
    entries: list[tuple[str, str, Json]] = []
    n = 0
    while url is not None:
        try:
            listed = await fetch_list(api, etags, url)
        except HttpStatusError as exc:
            if exc.status != 404:
                raise
            break  # gone since the pull requests step read it
        if listed.items:
            key = f"r{repo['id']}:n{number}:{name}:p{n}"
            pages.append((key, type_, {"repository": repo, "comments": listed.items}))
        entry = listed.entry()
        if entry is not None:
            entries.append(entry)
        url, n = listed.next, n + 1
    return pages, entries


def _number(url: Any) -> int | None:
    """The pull request (or issue) number ending an API URL."""
    if not isinstance(url, str):
        return None
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def comment_rows(comments: list[Any], field: str, where: str) -> list[Json]:
    """One row per comment id (the most recently updated copy), with its owner's number."""
    rows: dict[str, Json] = {}
    for c in comments:
        if not isinstance(c, dict) or c.get("id") is None:
            raise Reject(f"{where}: a comment has no id")
        number = _number(c.get(field))
        if number is None:
            continue
        user = c.get("user")
        cid = str(c["id"])
        row: Json = {
            "external_id": cid,
            "number": number,
            "author_login": user.get("login") if isinstance(user, dict) else None,
            "body": c.get("body"),
            "path": c.get("path"),
            "created": parse_time(c.get("created_at")),
            "updated": parse_time(c.get("updated_at")),
        }
        old = rows.get(cid)
        if old is None or (row["updated"] or _EPOCH) >= (old["updated"] or _EPOCH):
            rows[cid] = row
    return [rows[k] for k in sorted(rows)]


async def load_comments(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    where = f"raw page {page.id} ({page.type})"
    payload = page.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("comments"), list):
        raise Reject(f"{where}: expected an object with 'repository' and 'comments'")
    repo = payload.get("repository")
    if not isinstance(repo, dict) or not repo.get("id"):
        raise Reject(f"{where}: 'repository' needs an id")
    kind, field = next((k, f) for k, _, t, f in KINDS if t == page.type)
    rows = comment_rows(payload["comments"], field, where)
    if not rows:
        return 0
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    async with ctx.pool.acquire() as conn, conn.transaction():
        repository_id = await conn.fetchval(
            SQL["github.repository_id"], tenant, integration, str(repo["id"])
        )
        if repository_id is None:
            raise Reject(f"{where}: repository {repo.get('full_name')} is not loaded")
        numbers = sorted({r["number"] for r in rows})
        locked = await conn.fetch(SQL["github.lock_pulls"], repository_id, numbers)
        known = {r["number"] for r in locked}
        mine = [r for r in rows if r["number"] in known]
        written = await conn.fetch(SQL["github.upsert_comments"], tenant, repository_id, kind, mine)
        await finish(conn, [int(r["id"]) for r in locked])
    return len(written)
