"""The issues step: every issue in the sync window with its complete status history.

Issues come from `POST /search/jql` in pages of 100 with their fields and the embedded
changelog, oldest update first. Jira embeds at most 100 histories; an issue with more is
stored `deferred` in its page and queued. Queued issues are completed together, up to 100
at a time: one search by id for their current fields and one `POST /changelog/bulkfetch` of
their status histories (per-issue `/changelog` only where bulkfetch is missing), stored as one
more page. So a cut changelog costs about two calls per hundred such issues, not one each.

Incremental runs ask for `updated >= "yyyy-MM-dd HH:mm"`: the last sync minus an overlap,
written in the API user's time zone, which is how Jira reads JQL dates. Full syncs end with an
ids-only scan (5000 ids a page) whose page soft-deletes what Jira no longer lists.

The run checkpoint records the query, the next page's token and ordinal and the queued
issues, and commits with every stored page, so a redelivered message continues exactly after
the last page stored; pages are keyed by ordinal, so a page stored twice is stored once.
Search answers are stored as the bytes Jira sent, never decoded and encoded again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from etld.logs import get_logger
from etld.sources.base import ExtractOutput, StepContext
from etld.sources.checkpoints import load_checkpoint, save_checkpoint
from etld.sources.http import ApiClient, HttpStatusError, MalformedResponse, Verbatim
from etld.sources.jira.api import API, JiraOptions, expect_object, jira_session, offset_pages
from etld.sources.jira.steps_meta import JiraStep
from etld.sources.jira.targets import target_refs, targets_jql
from etld.sources.jira.transform_issues import load_issue_ids, load_issue_page

log = get_logger(__name__)

ISSUES = "jira_issues"
ISSUE_IDS = "jira_issue_ids"
SEARCH = f"{API}/search/jql"
BULK = f"{API}/changelog/bulkfetch"
# Everything the transform reads (summary ... duedate, every customfield_*) without the
# heavy lists it does not.
ISSUE_FIELDS = ["*all", "-comment", "-worklog", "-attachment", "-watches", "-votes"]
IDS_PER_PAGE = 5000
BULK_HISTORIES = 10_000
_NO_BULK = frozenset({404, 405, 501})
Json = dict[str, Any]


def quote_jql(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def restriction(opts: JiraOptions) -> str:
    if not opts.projects:
        return ""
    return f"project in ({', '.join(quote_jql(p) for p in opts.projects)})"


def window_jql(opts: JiraOptions, since: datetime | None, zone: ZoneInfo) -> str:
    """The search of a full sync (`since` None) or of the changes since `since`."""
    parts = [restriction(opts)] if opts.projects else []
    if since is not None:
        parts.insert(0, f'updated >= "{since.astimezone(zone):%Y-%m-%d %H:%M}"')
    elif not parts:
        parts.append('created >= "1970-01-01"')  # Jira refuses unbounded searches
    return " AND ".join(parts) + " ORDER BY updated ASC, id ASC"


def ids_jql(opts: JiraOptions) -> str:
    # By id, not by update: an issue edited during the scan must not slip past the cursor.
    return (restriction(opts) or 'created >= "1970-01-01"') + " ORDER BY id ASC"


def changelog_cut(issue: Json) -> bool:
    changelog = issue.get("changelog")
    if not isinstance(changelog, dict):
        return False
    total, histories = changelog.get("total"), changelog.get("histories")
    return isinstance(total, int) and isinstance(histories, list) and total > len(histories)


async def site_zone(api: ApiClient) -> ZoneInfo:
    """The API user's time zone, in which Jira reads the dates of a JQL query."""
    me = expect_object(await api.get(f"{API}/myself"), "/myself")
    name = str(me.get("timeZone") or "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown Jira time zone, using UTC", time_zone=name)
        return ZoneInfo("UTC")


def _issues(answer: Json, what: str) -> list[Json]:
    issues = answer.get("issues")
    if not isinstance(issues, list) or not all(isinstance(i, dict) and i.get("id") for i in issues):
        raise MalformedResponse(f"Jira returned a malformed response to {what}: no issue list")
    return issues


class IssueScan:
    """One extraction of the issues step, resumable from the run checkpoint."""

    def __init__(self, ctx: StepContext, out: ExtractOutput, api: ApiClient) -> None:
        self.ctx = ctx
        self.out = out
        self.api = api
        self.opts = JiraOptions.of(ctx)
        self.batch = max(1, min(self.opts.changelog_batch, 100))
        self.cp: Json = {}
        # The next search page, asked for while this one is being stored: (token, answer).
        self._next: tuple[str, asyncio.Task[Verbatim]] | None = None

    async def run(self) -> None:
        cp = await load_checkpoint(self.ctx.pool, self.ctx.run.run_id, IssuesStep.name)
        self.cp = cp if cp is not None else await self._start()
        try:
            while not self.cp["done"]:
                await (self._target_page() if self.cp.get("current") else self._page())
        finally:
            if self._next is not None:
                self._next[1].cancel()
        while self.cp["pending"]:
            await self._complete()
        if self.cp["full"] and not self.cp["ids_done"]:
            await self._id_scan()

    async def _start(self) -> Json:
        run = self.ctx.run
        targets = target_refs(run.config)  # a webhook run: only the issues events named
        full = not targets and (run.full_sync or run.last_sync_date is None)
        since = None
        zone = ZoneInfo("UTC")
        if not full and not targets and run.last_sync_date is not None:
            since = run.last_sync_date - timedelta(minutes=self.opts.overlap_minutes)
            zone = await site_zone(self.api)
        cp: Json = {
            "jql": targets_jql(targets) if targets else window_jql(self.opts, since, zone),
            "current": targets,
            "queue": [],
            "full": full,
            "page": 0,
            "token": None,
            "done": False,
            "pending": [],
            "batches": 0,
            "ids_done": False,
        }
        log.info("issue scan starts", run_id=run.run_id, jql=cp["jql"], full=full)
        await self._save(cp)
        return cp

    async def _save(self, cp: Json | None = None) -> None:
        await save_checkpoint(
            self.ctx.pool, self.ctx.run.run_id, IssuesStep.name, cp if cp is not None else self.cp
        )

    async def _search(self, jql: str, size: int, token: str | None) -> Verbatim:
        body: Json = {
            "jql": jql,
            "maxResults": size,
            "fields": ISSUE_FIELDS,
            "expand": "changelog",
        }
        if token:
            body["nextPageToken"] = token
        answer = await self.api.post_verbatim(SEARCH, body)
        expect_object(answer.value, "POST /search/jql")
        return answer

    async def _page(self) -> None:
        cp = self.cp
        size = self.opts.search_page_size
        received = await self._answer(cp["token"])
        answer: Json = received.value
        issues = _issues(answer, "POST /search/jql")
        following = answer.get("nextPageToken")
        if following and answer.get("isLast") is not True and issues and not cp.get("current"):
            # The next page depends only on this answer's token: fetch it while this one is
            # stored. The checkpoint still moves only after the store, so a crash loses no
            # page. Targeted searches fetch one page at a time (a 400 there means a retry).
            search = self._search(cp["jql"], size, following)
            self._next = (following, asyncio.ensure_future(search))
        cut = [str(i["id"]) for i in issues if changelog_cut(i)]
        payload: Json = {"search": answer}
        if cut:
            payload["deferred"] = cut
            # Queued in the page's own commit: every issue a stored page defers is queued.
            cp["pending"] = list(dict.fromkeys([*cp["pending"], *cut]))
        key = f"p{cp['page']:06d}"
        token = answer.get("nextPageToken")
        cp["page"] += 1
        cp["token"] = token
        cp["done"] = not token or answer.get("isLast") is True or not issues
        await self._store(payload, key, len(issues), {"search": received.text})
        if len(cp["pending"]) >= self.batch:
            await self._complete()

    async def _store(
        self, payload: Json, key: str, count: int, verbatim: dict[str, bytes] | None = None
    ) -> None:
        """Store a page with the checkpoint that follows it, in one commit."""
        await self.out.store_page(
            ISSUES,
            payload,
            key,
            item_count=count,
            verbatim=verbatim,
            checkpoint=(IssuesStep.name, self.cp),
        )

    async def _answer(self, token: str | None) -> Verbatim:
        """The answer for `token`: the one fetched ahead if it is for this token."""
        ahead, self._next = self._next, None
        if ahead is not None:
            if ahead[0] == token:
                return await ahead[1]
            ahead[1].cancel()
        return await self._search(self.cp["jql"], self.opts.search_page_size, token)

    async def _target_page(self) -> None:
        """A page of a targeted search. Jira refuses a whole query that names an issue deleted
        since the event; its targets are then asked for one by one, and a single refused one
        is skipped (the next full sync soft-deletes it)."""
        cp = self.cp
        try:
            await self._page()
        except HttpStatusError as exc:
            if exc.status != 400:
                raise
            if len(cp["current"]) > 1:
                cp["queue"] = [[ref] for ref in cp["current"]] + cp["queue"]
            else:
                log.warning("targeted issue refused by the search, skipped", issue=cp["current"])
            cp["done"] = True
        if cp["done"] and cp["queue"]:
            cp["current"] = cp["queue"].pop(0)
            cp["jql"], cp["token"], cp["done"] = targets_jql(cp["current"]), None, False
        await self._save()

    async def _complete(self) -> None:
        """Store the first queued issues again, with their complete status histories."""
        cp = self.cp
        wanted = [i for i in cp["pending"][: self.batch] if i.isdigit()]
        answer: Json = {"issues": []}
        verbatim: dict[str, bytes] = {}
        if wanted:
            received = await self._search(f"id in ({', '.join(wanted)})", len(wanted), None)
            answer, verbatim["search"] = received.value, received.text
        found = [str(i["id"]) for i in _issues(answer, "POST /search/jql (by id)")]
        payload: Json = {"search": answer}
        if found:
            bulk = await self._bulk(found)
            if bulk is not None:
                payload["bulk_changelogs"] = bulk
            else:
                payload["issue_changelogs"] = {i: await self._issue_changelog(i) for i in found}
        key = f"c{cp['batches']:06d}"
        done = set(cp["pending"][: self.batch])
        cp["pending"] = [i for i in cp["pending"] if i not in done]
        cp["batches"] += 1
        await self._store(payload, key, len(found), verbatim)

    async def _bulk(self, issue_ids: list[str]) -> list[Json] | None:
        """Status histories of up to 1000 issues; None when the site has no bulkfetch."""
        answers: list[Json] = []
        token: str | None = None
        while True:
            body: Json = {
                "issueIdsOrKeys": issue_ids,
                "fieldIds": ["status"],
                "maxResults": BULK_HISTORIES,
            }
            if token:
                body["nextPageToken"] = token
            try:
                answer = expect_object(await self.api.post(BULK, body), "POST /changelog/bulkfetch")
            except HttpStatusError as exc:
                if exc.status in _NO_BULK and not answers:
                    return None
                raise
            answers.append(answer)
            token = answer.get("nextPageToken")
            if not token:
                return answers

    async def _issue_changelog(self, issue_id: str) -> list[Json]:
        path = f"{API}/issue/{issue_id}/changelog"
        return [page async for page in offset_pages(self.api, path, size=100)]

    async def _id_scan(self) -> None:
        scanned_at = datetime.now(UTC)
        jql = ids_jql(self.opts)
        pages: list[Json] = []
        token: str | None = None
        while True:
            body: Json = {"jql": jql, "maxResults": IDS_PER_PAGE, "fields": ["id"]}
            if token:
                body["nextPageToken"] = token
            answer = expect_object(await self.api.post(SEARCH, body), "POST /search/jql (ids)")
            pages.append(answer)
            token = answer.get("nextPageToken")
            if not token or answer.get("isLast") is True or not _issues(answer, "id scan"):
                break
        count = sum(len(p["issues"]) for p in pages)
        payload = {"jql": jql, "scanned_at": scanned_at.isoformat(), "pages": pages}
        self.cp["ids_done"] = True
        await self.out.store_page(
            ISSUE_IDS, payload, "ids", item_count=count, checkpoint=(IssuesStep.name, self.cp)
        )


class IssuesStep(JiraStep):
    name = "jira_issues_with_changelogs"
    display_name = "Issues & Changelogs"
    loaders = {ISSUES: load_issue_page, ISSUE_IDS: load_issue_ids}

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: ExtractOutput) -> None:
        async with jira_session(ctx, out) as api:
            await IssueScan(ctx, out, api).run()
