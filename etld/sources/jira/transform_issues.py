"""Issue pages into work_items and changelogs, with workflow metrics, in one pass per page.

A stored issue page is `{"search": <a /search/jql answer>, "deferred": [ids],
"bulk_changelogs": [<bulkfetch answers>], "issue_changelogs": {id: [<changelog pages>]}}`,
every part verbatim. Issues listed in `deferred` had their embedded changelog cut at Jira's cap
and are loaded from a later page that carries their complete history. Histories from all parts
are merged by history id, so a history seen twice counts once.

Per page: the tenant's status → flow category mapping and the custom field mapping are read
once; each issue's status transitions give its changelog rows and its 15 metrics in memory
(`compute_workflow`); then one upsert writes the work items and one statement replaces the
changelogs of the items written. Nothing is read back from changelogs, and no API is called,
so a stored page can be transformed again at any time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from etld.logs import get_logger
from etld.metrics.workflow import (
    Transition,
    compute_workflow,
    default_flow_category,
    parse_jira_datetime,
)
from etld.sources.base import RawPage, StepContext, TransformOutput
from etld.sources.jira import values as v
from etld.store.queries import SQL
from etld.workers.errors import Reject

log = get_logger(__name__)

CUSTOM_SLOTS = tuple(f"custom_field_{i:02d}" for i in range(1, 21))
SLOTS = ("team", "story_points", "code_changed", *CUSTOM_SLOTS)  # the allow-list of columns
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YIELD_EVERY = 10  # issues between turns of the event loop, a few ms of CPU
Json = dict[str, Any]


@dataclass(frozen=True)
class Lookups:
    """What a page needs from the database, read once per page."""

    flow: dict[str, str]  # status external id -> flow category
    status_ids: dict[str, int]  # status external id -> statuses.id
    slots: dict[str, str]  # custom field id -> work_items column it fills
    schemas: dict[str, Mapping[str, Any]]  # custom field id -> schema


async def read_lookups(conn: asyncpg.Connection, tenant_id: int, integration_id: int) -> Lookups:
    statuses = await conn.fetch(SQL["jira.status_flow"], tenant_id, integration_id)
    flow = {
        r["external_id"]: r["flow_category"] or default_flow_category(r["category"])
        for r in statuses
    }
    status_ids = {r["external_id"]: r["id"] for r in statuses}
    slots = {
        r["external_id"]: r["slot"]
        for r in await conn.fetch(SQL["jira.field_slots"], tenant_id, integration_id)
        if r["slot"] in SLOTS
    }
    schemas = {
        r["external_id"]: r["schema"] or {"type": r["field_type"]}
        for r in await conn.fetch(SQL["jira.field_types"], tenant_id, integration_id)
    }
    return Lookups(flow, status_ids, slots, schemas)


@dataclass
class IssueRows:
    external_id: str
    updated: datetime | None
    row: Json  # a work_items row, keys as in jira.upsert_work_items
    changelog: list[Change]  # the item's changelogs rows, status external ids unresolved


# A changelogs row before it knows its work item and status row ids: history id, from and to
# status external ids, transition start and change dates, time in status, author. A plain
# tuple: one is built per transition, and it goes into the item's source hash as it is.
Change = tuple[str, str | None, str, datetime, datetime, float, str | None]
CHANGE_FIELDS = (
    "external_id",
    "from_ext",
    "to_ext",
    "transition_start_date",
    "transition_change_date",
    "time_in_status_seconds",
    "author",
)


# -- page shape ------------------------------------------------------------------------------------


@dataclass
class IssuePage:
    issues: list[Json]
    histories: dict[str, list[Json]]  # issue id -> histories beyond the embedded ones


def parse_issue_page(page: RawPage) -> IssuePage:
    """The page's issues (deferred ones left out) and extra histories; Reject if misshapen."""
    payload = page.payload
    where = f"raw page {page.id} ({page.type})"
    if not isinstance(payload, dict) or not isinstance(payload.get("search"), dict):
        raise Reject(f"{where}: expected an object with a 'search' answer")
    issues = payload["search"].get("issues")
    if not isinstance(issues, list) or not all(isinstance(i, dict) for i in issues):
        raise Reject(f"{where}: 'search.issues' is not a list of issues")
    deferred = {str(i) for i in payload.get("deferred") or ()}
    for issue in issues:
        if not issue.get("id"):
            raise Reject(f"{where}: an issue has no id")
    extra: dict[str, list[Json]] = {}
    for answer in _list(payload.get("bulk_changelogs"), where, "bulk_changelogs"):
        for group in _list(answer.get("issueChangeLogs"), where, "issueChangeLogs"):
            histories = _list(group.get("changeHistories"), where, "changeHistories")
            extra.setdefault(str(group.get("issueId")), []).extend(histories)
    per_issue = payload.get("issue_changelogs") or {}
    if not isinstance(per_issue, dict):
        raise Reject(f"{where}: 'issue_changelogs' is not an object")
    for issue_id, pages in per_issue.items():
        for answer in _list(pages, where, "issue_changelogs"):
            extra.setdefault(str(issue_id), []).extend(_list(answer.get("values"), where, "values"))
    kept = [i for i in issues if str(i["id"]) not in deferred]
    return IssuePage(kept, extra)


def _list(value: Any, where: str, name: str) -> list[Json]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise Reject(f"{where}: '{name}' is not a list of objects")
    return value


# -- one issue -------------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    """A Jira timestamp in UTC. Every timestamp sharing the one UTC tzinfo makes comparing
    and subtracting them (sorting transitions, times in status, binary encoding for
    PostgreSQL) skip a tzinfo call per operation: about a tenth of a page's CPU otherwise."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return parse_jira_datetime(value).astimezone(UTC)
    except ValueError:
        return None


def _name(value: Any, key: str = "name") -> str | None:
    if isinstance(value, dict):
        found = value.get(key)
        return str(found) if found is not None else None
    return None


def transitions(histories: Iterable[Json]) -> tuple[list[Transition], dict[str, str | None]]:
    """Status transitions of merged histories (each history id once), and their authors."""
    seen: set[str] = set()
    out: list[Transition] = []
    authors: dict[str, str | None] = {}
    for history in histories:
        items = history.get("items")
        if not isinstance(items, list):
            continue
        # Most histories hold one item; only status items matter, and only histories with
        # one are worth parsing a timestamp for.
        moves = [i for i in items if isinstance(i, dict) and _is_status(i) and i.get("to")]
        if not moves:
            continue
        hid = history.get("id")
        hid = hid if type(hid) is str else str(hid or "")
        if not hid or hid in seen:
            continue
        seen.add(hid)
        at = _time(history.get("created"))
        if at is None:
            continue
        author = _name(history.get("author"), "displayName")
        for n, item in enumerate(moves):
            # Jira puts one status change in a history; should one hold more, keep them apart.
            tid = hid if n == 0 else f"{hid}:{n}"
            frm = item.get("from")
            out.append(Transition(tid, at, str(frm) if frm else None, str(item["to"])))
            authors[tid] = author
    return out, authors


def _is_status(item: Mapping[str, Any]) -> bool:
    field_id = item.get("fieldId")
    if field_id is not None:
        return bool(field_id == "status")
    return item.get("field") == "status" and item.get("fieldtype", "jira") == "jira"


def issue_rows(issue: Json, extra: Sequence[Json], lookups: Lookups) -> IssueRows:
    fields = issue.get("fields") if isinstance(issue.get("fields"), dict) else {}
    assert isinstance(fields, dict)
    embedded = issue.get("changelog")
    histories = list(extra)
    if isinstance(embedded, dict) and isinstance(embedded.get("histories"), list):
        histories.extend(h for h in embedded["histories"] if isinstance(h, dict))
    moves, authors = transitions(histories)
    created = _time(fields.get("created"))
    updated = _time(fields.get("updated"))
    start = created or min((t.at for t in moves), default=None) or updated or _EPOCH
    metrics, changes = compute_workflow(start, moves, lookups.flow)
    labels = fields.get("labels")
    row: Json = {
        "external_id": str(issue["id"]),
        "key": str(issue.get("key") or issue["id"]),
        "project_ext": _name(fields.get("project"), "id"),
        "wit_ext": _name(fields.get("issuetype"), "id"),
        "status_ext": _name(fields.get("status"), "id"),
        "summary": fields.get("summary") if isinstance(fields.get("summary"), str) else None,
        "description": v.adf_to_text(fields.get("description")),
        "priority": _name(fields.get("priority")),
        "assignee": _name(fields.get("assignee"), "displayName"),
        "assignee_account_id": _name(fields.get("assignee"), "accountId"),
        "reporter": _name(fields.get("reporter"), "displayName"),
        "labels": [str(x) for x in labels] if isinstance(labels, list) else [],
        "parent_key": _name(fields.get("parent"), "key"),
        "resolution": _name(fields.get("resolution")),
        "created": created,
        "updated": updated,
        "resolved": _time(fields.get("resolutiondate")),
        "due_date": _date(fields.get("duedate")),
        **_custom_fields(fields, lookups),
        **metrics.as_row(),
    }
    changelog: list[Change] = [(*c, authors.get(c.external_id)) for c in changes]
    digest = orjson.dumps([row, changelog], option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)
    row["source_hash"] = hashlib.blake2b(digest, digest_size=16).hexdigest()
    return IssueRows(row["external_id"], updated, row, changelog)


def _date(value: Any) -> str | None:
    if isinstance(value, str) and len(value) >= 10:
        try:
            return datetime.strptime(value[:10], "%Y-%m-%d").date().isoformat()
        except ValueError:
            return None
    return None


def _custom_fields(fields: Mapping[str, Any], lookups: Lookups) -> Json:
    """Mapped custom fields into their columns, every other one into the overflow, and the
    pull request count of the development field."""
    out: Json = dict.fromkeys(SLOTS)
    overflow: Json = {}
    people: Json = {}
    texts: dict[str, str] = {}  # string values: where a development summary can be
    slots, schemas = lookups.slots, lookups.schemas
    for field_id, raw in fields.items():
        # Most custom fields of most issues are empty: they fill nothing and cost nothing.
        if raw is None or not field_id.startswith("customfield_"):
            continue
        if type(raw) is str:
            texts[field_id] = raw
        elif type(raw) is dict or type(raw) is list:
            accounts = v.account_ids(raw)
            if accounts is not None:
                people[field_id] = accounts
        value = v.normalise(field_id, raw, schemas.get(field_id))
        slot = slots.get(field_id)
        if slot == "story_points":
            out[slot] = v.as_number(value)
        elif slot == "code_changed":
            out[slot] = v.as_flag(value)
        elif slot is not None:
            out[slot] = v.as_text(value)
        elif value is not None:
            overflow[field_id] = value
    if people:
        overflow[v.ACCOUNT_IDS] = people
    out["custom_fields_overflow"] = overflow
    out["dev_pr_count"] = v.dev_pr_count(texts)
    return out


# -- loading -----------------------------------------------------------------------------------


def newest_per_issue(rows: Iterable[IssueRows]) -> list[IssueRows]:
    """One row per issue (an upsert cannot touch a row twice): the most recently updated,
    in id order, so concurrent pages sharing issues lock their rows in the same order."""
    best: dict[str, IssueRows] = {}
    for r in rows:
        old = best.get(r.external_id)
        if old is None or (r.updated or _EPOCH) >= (old.updated or _EPOCH):
            best[r.external_id] = r
    return [best[k] for k in sorted(best)]


async def load_issue_page(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    parsed = parse_issue_page(page)
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    async with ctx.pool.acquire() as conn:
        lookups = await read_lookups(conn, tenant, integration)
        computed: list[IssueRows] = []
        for start in range(0, len(parsed.issues), YIELD_EVERY):
            if start:
                # A page is tens of ms of CPU; letting other handlers (the sequential
                # issue scan above all) run in between keeps them from queueing behind it.
                await asyncio.sleep(0)
            computed.extend(
                issue_rows(i, parsed.histories.get(str(i["id"]), ()), lookups)
                for i in parsed.issues[start : start + YIELD_EVERY]
            )
        rows = newest_per_issue(computed)
        if not rows:
            return 0
        async with conn.transaction():
            written = await conn.fetch(
                SQL["jira.upsert_work_items"], tenant, integration, [r.row for r in rows]
            )
            await _write_changelogs(conn, tenant, integration, rows, written, lookups)
    inserted = [rec["external_id"] for rec in written if rec["inserted"]]
    updated = [rec["external_id"] for rec in written if not rec["inserted"]]
    if inserted:
        out.embed("work_items", inserted, "insert")
    if updated:
        out.embed("work_items", updated, "update")
    return len(written)


CHANGELOG_COPY_COLUMNS = (
    "tenant_id",
    "integration_id",
    "work_item_id",
    CHANGE_FIELDS[0],
    "from_status_id",
    "to_status_id",
    *CHANGE_FIELDS[3:],
)


async def _write_changelogs(
    conn: asyncpg.Connection,
    tenant: int,
    integration: int,
    rows: Sequence[IssueRows],
    written: Sequence[asyncpg.Record],
    lookups: Lookups,
) -> None:
    """The complete status history of every work item just written.

    An item this transaction inserted has no history rows yet (ids are never reused), so its
    rows are COPYed straight in; an updated item's history is replaced row by row, removing
    what Jira no longer lists. Unchanged items (not in `written`) are left alone."""
    ids = {rec["external_id"]: (rec["id"], rec["inserted"]) for rec in written}
    status = lookups.status_ids.get
    fresh: list[tuple[Any, ...]] = []
    replaced: list[Json] = []
    replaced_ids: list[int] = []
    for r in rows:
        known = ids.get(r.external_id)
        if known is None:
            continue
        item_id, inserted = known
        if inserted:
            fresh.extend(
                (tenant, integration, item_id, c[0], status(c[1] or ""), status(c[2]), *c[3:])
                for c in r.changelog
            )
        else:
            replaced_ids.append(item_id)
            replaced.extend(
                {"work_item_id": item_id, **dict(zip(CHANGE_FIELDS, c, strict=True))}
                for c in r.changelog
            )
    if fresh:
        await conn.copy_records_to_table(
            "changelogs", records=fresh, columns=CHANGELOG_COPY_COLUMNS
        )
    if replaced_ids:
        await conn.execute(
            SQL["jira.replace_changelogs"], tenant, integration, replaced_ids, replaced
        )


async def load_issue_ids(ctx: StepContext, page: RawPage, out: TransformOutput) -> int:
    """A full sync's id scan: soft-delete items Jira no longer lists, revive listed ones."""
    payload = page.payload
    where = f"raw page {page.id} ({page.type})"
    if not isinstance(payload, dict) or not isinstance(payload.get("pages"), list):
        raise Reject(f"{where}: expected an object with the id scan 'pages'")
    seen: set[str] = set()
    for answer in payload["pages"]:
        issues = answer.get("issues") if isinstance(answer, dict) else None
        seen.update(str(i["id"]) for i in _list(issues, where, "issues") if i.get("id"))
    scanned_at = _time(payload.get("scanned_at"))
    if scanned_at is None:
        raise Reject(f"{where}: 'scanned_at' is missing or not a timestamp")
    if not seen:
        # An empty answer is far more often lost permissions than an emptied site.
        log.warning("id scan found no issues, nothing soft-deleted", raw_id=page.id)
        return 0
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    listed = sorted(seen)
    async with ctx.pool.acquire() as conn, conn.transaction():
        gone = await conn.fetch(
            SQL["jira.soft_delete_missing"], tenant, integration, listed, scanned_at
        )
        back = await conn.fetch(SQL["jira.undelete_present"], tenant, integration, listed)
    if gone:
        out.embed("work_items", [r["external_id"] for r in gone], "delete")
        log.info("work items soft-deleted", count=len(gone), raw_id=page.id)
    if back:
        out.embed("work_items", [r["external_id"] for r in back], "update")
    return len(gone) + len(back)
