"""Pull request pages into pull_requests, pr_commits, pr_reviews and Jira links.

Two page types: a list page (`{"repository": {id, full_name}, "pulls": [<list items>]}`) and
a details page (`{"repository": ..., "pulls": [{"pull": {id, number, updated_at}, "commits":
[<pages>], "commits_complete": bool, "reviews": [<pages>], "reviews_complete": bool,
"pull_detail": <the GET /pulls/{n} answer, or null>}]}`). The transform stage runs pages in any
order, so a details page may come before the list page of its pull requests: both first
make sure each pull request's row exists (a stub of id and number when new) and lock the
rows in number order, then write. Whichever comes last recomputes the timing columns from
all that is loaded by then (`github.refresh_pull_metrics`), so the result does not depend
on the order. A page older than what is loaded (by the pull request's `updated_at`) leaves
the row, its commits and its reviews alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from etld.sources.base import RawPage, StepContext, TransformOutput
from etld.sources.github.api import COMMITS_CAP, Json, parse_time
from etld.sources.github.links import link_rows
from etld.store.queries import SQL
from etld.workers.errors import Reject

PR_TEXT_SOURCES = ["title", "body", "branch"]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _obj(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _login(user: Any) -> str | None:
    return str(user["login"]) if isinstance(user, dict) and user.get("login") else None


def pull_row(pr: Json) -> Json:
    """A pull_requests row from a list item or a `GET /pulls/{n}` answer (the counts and
    sizes only the latter has stay NULL, which keeps what is stored)."""
    head, base = _obj(pr.get("head")), _obj(pr.get("base"))
    merged = pr.get("merged")
    return {
        "external_id": str(pr["id"]),
        "number": int(pr["number"]),
        "title": pr.get("title"),
        "body": pr.get("body"),
        "state": pr.get("state"),
        "draft": bool(pr.get("draft")),
        # The list has no `merged`; a merge time says the same.
        "merged": merged if isinstance(merged, bool) else pr.get("merged_at") is not None,
        "author_login": _login(pr.get("user")),
        "head_ref": head.get("ref"),
        "base_ref": base.get("ref"),
        "head_sha": head.get("sha"),
        "additions": _int(pr.get("additions")),
        "deletions": _int(pr.get("deletions")),
        "changed_files": _int(pr.get("changed_files")),
        "commits_count": _int(pr.get("commits")),
        "created": parse_time(pr.get("created_at")),
        "updated": parse_time(pr.get("updated_at")),
        "closed_at": parse_time(pr.get("closed_at")),
        "merged_at": parse_time(pr.get("merged_at")),
        "html_url": pr.get("html_url"),
    }


def _repository(page: RawPage) -> tuple[Json, list[Any]]:
    payload = page.payload
    where = f"raw page {page.id} ({page.type})"
    if not isinstance(payload, dict) or not isinstance(payload.get("pulls"), list):
        raise Reject(f"{where}: expected an object with 'repository' and 'pulls'")
    repo = payload.get("repository")
    if not isinstance(repo, dict) or not repo.get("id") or not repo.get("full_name"):
        raise Reject(f"{where}: 'repository' needs an id and a full_name")
    return repo, payload["pulls"]


@dataclass
class Locked:
    """The page's pull request rows, created when missing and locked for this transaction."""

    repository_id: int
    rows: dict[int, asyncpg.Record]  # number -> id, external_id, source/details updated

    def id_of(self, number: int) -> int:
        return int(self.rows[number]["id"])

    @property
    def ids(self) -> list[int]:
        return [int(r["id"]) for r in self.rows.values()]


async def lock_pulls(
    conn: asyncpg.Connection, ctx: StepContext, page: RawPage, repo: Json, refs: Iterable[Json]
) -> Locked:
    """Make sure each (external_id, number) has a row, then lock them in number order."""
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    repository_id = await conn.fetchval(
        SQL["github.repository_id"], tenant, integration, str(repo["id"])
    )
    if repository_id is None:
        raise Reject(
            f"raw page {page.id} ({page.type}): repository {repo['full_name']} is not loaded"
        )
    wanted = sorted({r["number"]: r for r in refs}.values(), key=lambda r: r["number"])
    await conn.execute(SQL["github.ensure_pulls"], tenant, integration, repository_id, wanted)
    rows = await conn.fetch(SQL["github.lock_pulls"], repository_id, [r["number"] for r in wanted])
    return Locked(repository_id, {r["number"]: r for r in rows})


def _older(updated: datetime | None, stored: datetime | None) -> bool:
    """Whether a page read at `updated` is older than what is loaded (read at `stored`)."""
    return stored is not None and (updated is None or updated < stored)


async def write_pulls(
    conn: asyncpg.Connection, ctx: StepContext, locked: Locked, rows: list[Json]
) -> list[asyncpg.Record]:
    if not rows:
        return []
    return list(
        await conn.fetch(SQL["github.update_pulls"], ctx.run.tenant_id, locked.repository_id, rows)
    )


async def finish(conn: asyncpg.Connection, ids: list[int]) -> None:
    if ids:
        await conn.execute(SQL["github.refresh_pull_metrics"], sorted(ids))


# -- list pages --------------------------------------------------------------------------------


async def load_pull_page(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    repo, pulls = _repository(page)
    newest: dict[int, Json] = {}
    for pr in pulls:
        if not isinstance(pr, dict) or "id" not in pr or _int(pr.get("number")) is None:
            raise Reject(f"raw page {page.id} ({page.type}): a pull request has no id or number")
        row = pull_row(pr)
        old = newest.get(row["number"])
        if old is None or not _older(row["updated"], old["updated"]):
            newest[row["number"]] = row
    if not newest:
        return 0
    rows = [newest[n] for n in sorted(newest)]
    async with ctx.pool.acquire() as conn, conn.transaction():
        locked = await lock_pulls(conn, ctx, page, repo, rows)
        current = [
            r
            for r in rows
            if not _older(r["updated"], locked.rows[r["number"]]["source_updated_at"])
        ]
        fresh = {
            r["number"] for r in current if locked.rows[r["number"]]["source_updated_at"] is None
        }
        written = await write_pulls(conn, ctx, locked, current)
        ids = [locked.id_of(r["number"]) for r in current]
        links = [
            link
            for r in current
            for link in link_rows(
                locked.id_of(r["number"]),
                str(repo["full_name"]),
                r["number"],
                r["html_url"],
                [("title", r["title"]), ("body", r["body"]), ("branch", r["head_ref"])],
            )
        ]
        tenant = ctx.run.tenant_id
        await conn.execute(SQL["github.replace_pull_links"], tenant, ids, PR_TEXT_SOURCES, links)
        await conn.execute(SQL["github.attach_links"], tenant, ids)
        await finish(conn, ids)
    embed(out, written, newest, fresh)
    return len(written)


def embed(
    out: TransformOutput, written: list[asyncpg.Record], rows: dict[int, Json], fresh: set[int]
) -> None:
    """Embeddings of the pull requests written: new ones inserted, known ones updated."""
    numbers = {int(w["number"]) for w in written}
    inserted = [rows[n]["external_id"] for n in sorted(numbers & fresh)]
    updated = [rows[n]["external_id"] for n in sorted(numbers - fresh)]
    if inserted:
        out.embed("pull_requests", inserted, "insert")
    if updated:
        out.embed("pull_requests", updated, "update")


# -- details pages -----------------------------------------------------------------------------


def commit_rows(pull_request_id: int, pages: Iterable[Any]) -> list[Json]:
    rows: dict[str, Json] = {}
    for item in _items(pages):
        commit = _obj(item.get("commit"))
        author, committer = _obj(commit.get("author")), _obj(commit.get("committer"))
        sha = item.get("sha")
        if not sha:
            continue
        rows[str(sha)] = {
            "pull_request_id": pull_request_id,
            "sha": str(sha),
            "message": commit.get("message"),
            "author_name": author.get("name"),
            "author_email": author.get("email"),
            "author_login": _login(item.get("author")),
            "authored_at": parse_time(author.get("date")),
            "committed_at": parse_time(committer.get("date")),
        }
    return list(rows.values())


def review_rows(pull_request_id: int, pages: Iterable[Any]) -> list[Json]:
    rows: dict[str, Json] = {}
    for item in _items(pages):
        if item.get("id") is None:
            continue
        rows[str(item["id"])] = {
            "pull_request_id": pull_request_id,
            "external_id": str(item["id"]),
            "author_login": _login(item.get("user")),
            "state": item.get("state"),
            "body": item.get("body"),
            "submitted_at": parse_time(item.get("submitted_at")),
        }
    return list(rows.values())


def _items(pages: Iterable[Any]) -> Iterable[Json]:
    for answer in pages or ():
        if not isinstance(answer, list):
            raise Reject("a details page holds a list answer that is not a list")
        yield from (x for x in answer if isinstance(x, dict))


def _details_fields(entry: Json, commits: list[Json]) -> Json:
    """commits_count and truncated, when this page tells them (NULL keeps what is stored)."""
    detail = entry.get("pull_detail") if isinstance(entry.get("pull_detail"), dict) else None
    total = _int(detail.get("commits")) if detail else None
    listed = len(commits)
    out: Json = {"commits_count": total, "truncated": None}
    if entry.get("commits_complete"):
        if total is None and listed < COMMITS_CAP:
            out["commits_count"] = listed
        cut = listed >= COMMITS_CAP and (total is None or total > listed)
        out["truncated"] = {"commits": {"listed": listed, "total": total}} if cut else {}
    return out


async def load_details_page(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    repo, entries = _repository(page)
    refs = []
    for entry in entries:
        pull = entry.get("pull") if isinstance(entry, dict) else None
        if not isinstance(pull, dict) or "id" not in pull or _int(pull.get("number")) is None:
            raise Reject(f"raw page {page.id} ({page.type}): an entry has no pull id and number")
        refs.append({"external_id": str(pull["id"]), "number": pull["number"]})
    if not refs:
        return 0
    async with ctx.pool.acquire() as conn, conn.transaction():
        locked = await lock_pulls(conn, ctx, page, repo, refs)
        current = [
            e
            for e in entries
            if not _older(
                parse_time(e["pull"].get("updated_at")),
                locked.rows[e["pull"]["number"]]["details_updated_at"],
            )
        ]
        fulls = [
            pull_row(e["pull_detail"]) for e in current if isinstance(e.get("pull_detail"), dict)
        ]
        written = await write_pulls(conn, ctx, locked, sorted(fulls, key=lambda r: r["number"]))
        fresh = {n for n, r in locked.rows.items() if r["source_updated_at"] is None}
        loaded = await _children(conn, ctx, locked, str(repo["full_name"]), current)
        await finish(conn, [locked.id_of(e["pull"]["number"]) for e in current])
    embed(out, written, {r["number"]: r for r in fulls}, fresh)
    return loaded


async def _children(
    conn: asyncpg.Connection, ctx: StepContext, locked: Locked, repository: str, entries: list[Json]
) -> int:
    tenant = ctx.run.tenant_id
    commits: list[Json] = []
    reviews: list[Json] = []
    details: list[Json] = []
    links: list[Json] = []
    complete_commits: list[int] = []
    complete_reviews: list[int] = []
    for e in entries:
        number = int(e["pull"]["number"])
        pr_id = locked.id_of(number)
        mine = commit_rows(pr_id, e.get("commits") or ())
        commits += mine
        reviews += review_rows(pr_id, e.get("reviews") or ())
        if e.get("commits_complete"):
            complete_commits.append(pr_id)
        if e.get("reviews_complete"):
            complete_reviews.append(pr_id)
        details.append(
            {
                "id": pr_id,
                "updated": parse_time(e["pull"].get("updated_at")),
                **_details_fields(e, mine),
            }
        )
        texts = [("commit", c["message"]) for c in mine]
        links += link_rows(pr_id, repository, number, locked.rows[number]["html_url"], texts)
    await conn.execute(SQL["github.replace_commits"], tenant, commits, complete_commits)
    await conn.execute(SQL["github.replace_reviews"], tenant, reviews, complete_reviews)
    await conn.execute(SQL["github.set_details"], details)
    # Commit links are replaced only where every commit was read; otherwise added to.
    await conn.execute(
        SQL["github.replace_pull_links"], tenant, complete_commits, ["commit"], links
    )
    return len(commits) + len(reviews)
