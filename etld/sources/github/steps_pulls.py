"""The pull requests step: each pull request updated in the run's window, with every commit
and review.

The root extraction item scans each repository's pull requests, most recently updated first
(`state=all&sort=updated&direction=desc`, 100 a page), stores each page, and stops at the
first one updated before the window (the last sync minus an overlap; a full sync reads all).
The pull requests of a page go out in batches of `batch_size` as further extraction items;
each fetches, per pull request, every page of its commits and of its reviews (about two calls
for most) and stores them for `details_per_page` pull requests at a time. `GET /pulls/{n}`
is called only where the list cannot do: when the commit list reaches GitHub's 250 cap (its
`commits` gives the real count) or when `pull_details` asks for sizes (additions, deletions,
changed files) at one more call per pull request. Comments come in the next step, from the
repository-wide lists, which costs a call per hundred comments instead of two per pull request.

A webhook run (`targets` in its configuration) reads only the pull requests it names, each
with `GET /pulls/{n}` and its commits and reviews (`TargetedPulls`, see `targets`).

The scan checkpoints after every page. Batch items need no checkpoint: pages are keyed by
batch, and the ETags recorded as pages are stored answer 304 for what a redelivered item
already fetched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from etld.logs import get_logger
from etld.sources.base import ExtractOutput, StepContext
from etld.sources.checkpoints import load_checkpoint, save_checkpoint
from etld.sources.github.api import (
    COMMITS_CAP,
    Etags,
    GitHubOptions,
    Json,
    Pages,
    all_pages,
    fetch_list,
    first_error,
    github_session,
    list_url,
    parse_time,
    window_start,
)
from etld.sources.github.steps_repos import GitHubStep, run_repositories
from etld.sources.github.targets import CHECKPOINT, fetch_pull, target_refs, targeted
from etld.sources.github.transform_pulls import load_details_page, load_pull_page
from etld.sources.http import ApiClient, HttpStatusError, MalformedResponse
from etld.workers.errors import Reject

log = get_logger(__name__)

PULLS = "github_pulls"
DETAILS = "github_pull_details"
STEP = "github_pull_requests"


class PullRequestsStep(GitHubStep):
    name = STEP
    display_name = "Pull Requests"

    def __init__(self) -> None:
        self.loaders = {PULLS: load_pull_page, DETAILS: load_details_page}

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        opts = GitHubOptions.of(ctx)
        etags = Etags(ctx.pool, ctx.integration.id, opts.conditional_requests)
        if targeted(ctx.run.config):  # a webhook run: only the pull requests events named
            async with github_session(ctx, out) as api:
                await TargetedPulls(ctx, out, api, etags, opts).run()
            return
        if "pulls" in message:
            async with github_session(ctx, out) as api:
                await DetailsBatch(ctx, out, api, etags, opts).run(message)
            return
        cp = await load_checkpoint(ctx.pool, ctx.run.run_id, STEP)
        if cp is None:
            since = window_start(ctx, opts)
            cp = {
                "repos": await run_repositories(ctx),
                "since": since.isoformat() if since else None,
                "repo": 0,
                "url": None,
                "page": 0,
            }
            log.info("pull request scan starts", run_id=ctx.run.run_id, since=cp["since"])
        async with github_session(ctx, out) as api:
            scan = PullScan(ctx, out, api, etags, opts, cp)
            while cp["repo"] < len(cp["repos"]):
                await scan.page()


def summary(pr: Any, what: str) -> list[Any]:
    """[number, id, updated_at]: what a batch item needs, and a 304 recalls, of a list item."""
    if not isinstance(pr, dict) or not isinstance(pr.get("number"), int) or "id" not in pr:
        raise MalformedResponse(f"GitHub returned a malformed pull request in {what}")
    return [pr["number"], str(pr["id"]), pr.get("updated_at")]


class PullScan:
    """The root item: list pages of each repository, newest update first, down to the window."""

    def __init__(
        self,
        ctx: StepContext,
        out: ExtractOutput,
        api: ApiClient,
        etags: Etags,
        opts: GitHubOptions,
        cp: Json,
    ) -> None:
        self.ctx, self.out, self.api, self.etags, self.opts, self.cp = (
            ctx,
            out,
            api,
            etags,
            opts,
            cp,
        )
        self.since = parse_time(cp["since"])

    async def page(self) -> None:
        cp = self.cp
        repo = cp["repos"][cp["repo"]]
        params: list[tuple[str, str | int]] = [
            ("state", "all"),
            ("sort", "updated"),
            ("direction", "desc"),
            ("per_page", self.opts.page_size),
            ("page", 1),
        ]
        url = cp["url"] or list_url(self.api, f"/repos/{repo['full_name']}/pulls", params)
        listed = await fetch_list(self.api, self.etags, url)
        if listed.items is not None:
            rows = [summary(p, url) for p in listed.items]
        else:
            rows = list(listed.known.meta.get("pulls", [])) if listed.known else []
        kept = [r for r in rows if self._in_window(r[2])]
        n = cp["page"]
        if listed.items:
            payload = {"repository": repo, "pulls": listed.items}
            await self.out.store_page(PULLS, payload, f"r{repo['id']}:p{n}", item_count=len(rows))
        size = max(1, self.opts.batch_size)
        for j in range(0, len(kept), size):
            key = f"r{repo['id']}:p{n}:b{j // size}"
            await self.out.follow_up(
                key, {"repository": repo, "pulls": kept[j : j + size], "batch": key}
            )
        entry = listed.entry(pulls=rows)
        if entry is not None:
            await self.etags.save([entry])
        if len(kept) < len(rows) or listed.next is None:
            cp["repo"], cp["url"], cp["page"] = cp["repo"] + 1, None, 0
        else:
            cp["url"], cp["page"] = listed.next, n + 1
        await save_checkpoint(self.ctx.pool, self.ctx.run.run_id, STEP, cp)

    def _in_window(self, updated: Any) -> bool:
        at = parse_time(updated)
        return self.since is None or at is None or at >= self.since


@dataclass
class Fetched:
    payload: Json
    changed: bool
    entries: list[tuple[str, str, Json]]


class DetailsBatch:
    """A batch item: commits and reviews of its pull requests, a stored page per few."""

    def __init__(
        self,
        ctx: StepContext,
        out: ExtractOutput,
        api: ApiClient,
        etags: Etags,
        opts: GitHubOptions,
    ) -> None:
        self.ctx, self.out, self.api, self.etags, self.opts = ctx, out, api, etags, opts

    async def run(self, message: dict[str, Any]) -> None:
        repo, pulls, key = message.get("repository"), message.get("pulls"), message.get("batch")
        if not isinstance(repo, dict) or not isinstance(pulls, list) or not key:
            raise Reject("pull request batch item without repository, pulls and batch key")
        size = max(1, self.opts.details_per_page)
        for c in range(0, len(pulls), size):
            chunk = pulls[c : c + size]
            first = [
                self._url(repo, n, kind) for n, _, _ in chunk for kind in ("commits", "reviews")
            ]
            await self.etags.prefetch(first)
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._one(repo, ref)) for ref in chunk]
            except ExceptionGroup as failed:
                raise first_error(failed) from None
            results = [t.result() for t in tasks]
            changed = [r.payload for r in results if r.changed]
            if changed:
                payload = {"repository": repo, "pulls": changed}
                page_key = f"{key}:c{c // size}"
                await self.out.store_page(DETAILS, payload, page_key, item_count=len(changed))
            await self.etags.save([e for r in results for e in r.entries])

    def _url(self, repo: Json, number: int, kind: str) -> str:
        path = f"/repos/{repo['full_name']}/pulls/{number}/{kind}"
        return list_url(self.api, path, [("per_page", self.opts.page_size), ("page", 1)])

    async def _one(self, repo: Json, ref: list[Any]) -> Fetched:
        number, pull_id, updated = ref
        try:
            commits = await self._pages(self._url(repo, number, "commits"))
            reviews = await self._pages(self._url(repo, number, "reviews"))
        except HttpStatusError as exc:
            if exc.status != 404:
                raise
            # Gone since the list was read (its repository deleted or made private).
            log.warning(
                "github pull request not found", repository=repo["full_name"], number=number
            )
            return Fetched({}, False, [])
        entries = commits.entries + reviews.entries
        detail = None
        if self.opts.pull_details or commits.count >= COMMITS_CAP:
            url = list_url(self.api, f"/repos/{repo['full_name']}/pulls/{number}", ())
            known = await self.etags.lookup(url)
            answer = await self.api.get_page(url, etag=known.etag if known else None)
            if not answer.not_modified:
                if not isinstance(answer.data, dict):
                    raise MalformedResponse(f"GitHub returned a malformed pull request: {url}")
                detail = answer.data
                if answer.etag:
                    entries.append((url, answer.etag, {}))
        payload = {
            "pull": {"id": pull_id, "number": number, "updated_at": updated},
            "commits": commits.answers,
            "commits_complete": commits.complete,
            "reviews": reviews.answers,
            "reviews_complete": reviews.complete,
            "pull_detail": detail,
        }
        changed = bool(commits.answers or reviews.answers or detail)
        return Fetched(payload, changed, entries)

    async def _pages(self, url: str) -> Pages:
        return await all_pages(self.api, self.etags, url)


@dataclass
class Target:
    """One target as read: where it stands, its repository and pull request, and its lists."""

    index: int
    repo: Json
    pull: Json
    commits: Pages
    reviews: Pages


class TargetedPulls:
    """The root item of a webhook run: each named pull request with its commits and reviews,
    `details_per_page` at a time, checkpointed after each group."""

    def __init__(
        self,
        ctx: StepContext,
        out: ExtractOutput,
        api: ApiClient,
        etags: Etags,
        opts: GitHubOptions,
    ) -> None:
        self.ctx, self.out, self.api, self.etags, self.opts = ctx, out, api, etags, opts

    async def run(self) -> None:
        refs = target_refs(self.ctx.run.config)
        run_id = self.ctx.run.run_id
        cp = await load_checkpoint(self.ctx.pool, run_id, CHECKPOINT)
        cp = cp or {"index": 0, "found": []}
        size = max(1, self.opts.details_per_page)
        while cp["index"] < len(refs):
            start = cp["index"]
            chunk = refs[start : start + size]
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(self._read(start + k, full, number))
                        for k, (full, number) in enumerate(chunk)
                    ]
            except ExceptionGroup as failed:
                raise first_error(failed) from None
            entries: list[tuple[str, str, Json]] = []
            for got in (t.result() for t in tasks):
                if got is not None:
                    await self._store(got)
                    cp["found"].append({"repository": got.repo, "number": got.pull["number"]})
                    entries += got.commits.entries + got.reviews.entries
            await self.etags.save(entries)
            cp["index"] = start + len(chunk)
            await save_checkpoint(self.ctx.pool, run_id, CHECKPOINT, cp)
        log.info("github targeted pull requests", run_id=run_id, found=len(cp["found"]))

    async def _read(self, index: int, full: str, number: int) -> Target | None:
        found = await fetch_pull(self.ctx, self.api, full, number)
        if found is None:
            return None
        repo, pull = found
        try:
            commits = await all_pages(self.api, self.etags, self._url(repo, number, "commits"))
            reviews = await all_pages(self.api, self.etags, self._url(repo, number, "reviews"))
        except HttpStatusError as exc:
            if exc.status != 404:
                raise
            log.warning("github pull request gone", repository=repo["full_name"], number=number)
            return None
        return Target(index, repo, pull, commits, reviews)

    def _url(self, repo: Json, number: int, kind: str) -> str:
        # The URLs polling reads, so their ETags serve both.
        path = f"/repos/{repo['full_name']}/pulls/{number}/{kind}"
        return list_url(self.api, path, [("per_page", self.opts.page_size), ("page", 1)])

    async def _store(self, got: Target) -> None:
        """The pull request as a list page (its row and the links of its texts), and its
        commits and reviews as a details page with the answer as `pull_detail`."""
        pull, key = got.pull, f"t{got.index}"
        await self.out.store_page(
            PULLS, {"repository": got.repo, "pulls": [pull]}, f"{key}:pull", item_count=1
        )
        entry = {
            "pull": {
                "id": str(pull["id"]),
                "number": pull["number"],
                "updated_at": pull.get("updated_at"),
            },
            "commits": got.commits.answers,
            "commits_complete": got.commits.complete,
            "reviews": got.reviews.answers,
            "reviews_complete": got.reviews.complete,
            "pull_detail": pull,
        }
        payload = {"repository": got.repo, "pulls": [entry]}
        await self.out.store_page(DETAILS, payload, f"{key}:details", item_count=1)
