"""Configuration pages into tables: projects and issue types, statuses, custom fields.

Each loader validates the page's shape (Reject naming the problem when it is wrong), builds
rows deduplicated by external id — Jira repeats the same issue type in every project that
uses it, and the same custom field in every create screen — and writes them with one
idempotent statement per table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etld.metrics.workflow import default_flow_category
from etld.sources.base import RawPage, StepContext
from etld.sources.jira.values import iso_datetime
from etld.store.queries import SQL
from etld.workers.errors import Reject

Json = dict[str, Any]
_CATEGORY_KEYS = frozenset({"new", "indeterminate", "done", "undefined"})
# Names Jira shows for its categories, for payloads whose key is not one of the four.
_CATEGORY_NAMES = {"to do": "new", "todo": "new", "in progress": "indeterminate", "done": "done"}


def _where(page: RawPage) -> str:
    return f"raw page {page.id} ({page.type})"


def _objects(value: Any, page: RawPage, what: str) -> list[Json]:
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise Reject(f"{_where(page)}: {what} is not a list of objects")
    return value


def _object(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# -- projects and issue types ----------------------------------------------------------------


def project_rows(page: RawPage) -> tuple[list[Json], list[Json], list[tuple[str, str]]]:
    """Projects, issue types (each id once) and (project id, type id) links of a page."""
    payload = page.payload
    if not isinstance(payload, dict):
        raise Reject(f"{_where(page)}: expected a /project/search answer (an object)")
    projects, types, links = [], {}, []
    for value in _objects(payload.get("values", []), page, "'values'"):
        if not value.get("id") or not value.get("key"):
            raise Reject(f"{_where(page)}: a project has no id or key")
        insight = _object(value.get("insight"))
        lead = _object(value.get("lead"))
        projects.append(
            {
                "external_id": str(value["id"]),
                "key": str(value["key"]),
                "name": _text(value.get("name")),
                "project_type": _text(value.get("projectTypeKey") or value.get("style")),
                "lead": _text(lead.get("displayName")),
                "raw_updated_at": iso_datetime(insight.get("lastIssueUpdateTime")),
            }
        )
        for itype in _objects(value.get("issueTypes", []), page, "'issueTypes'"):
            if not itype.get("id"):
                continue
            tid = str(itype["id"])
            types[tid] = {
                "external_id": tid,
                "name": str(itype.get("name") or tid),
                "description": _text(itype.get("description")),
                "hierarchy_level": itype.get("hierarchyLevel"),
                "subtask": bool(itype.get("subtask", False)),
                "icon_url": _text(itype.get("iconUrl")),
            }
            links.append((str(value["id"]), tid))
    return projects, [types[k] for k in sorted(types)], links


async def load_projects(ctx: StepContext, page: RawPage) -> int:
    projects, types, links = project_rows(page)
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    async with ctx.pool.acquire() as conn, conn.transaction():
        await conn.fetch(SQL["jira.upsert_projects"], tenant, integration, projects)
        await conn.fetch(SQL["jira.upsert_wits"], tenant, integration, types)
        await conn.execute(
            SQL["jira.link_projects_wits"],
            tenant,
            integration,
            [{"project_ext": p, "wit_ext": t} for p, t in links],
            [p["external_id"] for p in projects],
        )
    return len(projects) + len(types)


# -- statuses ----------------------------------------------------------------------------------


def category_key(status: Mapping[str, Any]) -> str | None:
    """The status' Jira category key; None when the payload does not say."""
    category = status.get("statusCategory")
    if isinstance(category, str):  # /statuses/search spells it "DONE", "IN_PROGRESS" ...
        key = category.lower().replace("_", " ")
        return _CATEGORY_NAMES.get(key, key if key in _CATEGORY_KEYS else "undefined")
    if not isinstance(category, dict):
        return None
    key = str(category.get("key") or "")
    if key in _CATEGORY_KEYS:
        return key
    return _CATEGORY_NAMES.get(str(category.get("name") or "").lower(), "undefined")


def status_rows(statuses: list[Json], page: RawPage) -> tuple[list[Json], list[Json]]:
    """Status rows (each id once) and default flow categories of those with a category."""
    rows: dict[str, Json] = {}
    for status in statuses:
        if not status.get("id") or not status.get("name"):
            raise Reject(f"{_where(page)}: a status has no id or name")
        sid = str(status["id"])
        rows[sid] = {
            "external_id": sid,
            "name": str(status["name"]),
            "category": category_key(status),
            "description": _text(status.get("description")),
        }
    # Id order: pages of projects sharing statuses, loaded concurrently, lock rows alike.
    ordered = [rows[k] for k in sorted(rows)]
    defaults = [
        {"external_id": r["external_id"], "flow_category": default_flow_category(r["category"])}
        for r in ordered
        if r["category"] is not None
    ]
    return ordered, defaults


async def _write_statuses(
    ctx: StepContext, conn: Any, rows: list[Json], defaults: list[Json]
) -> None:
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    await conn.fetch(SQL["jira.upsert_statuses"], tenant, integration, rows)
    if defaults:
        await conn.execute(SQL["jira.default_status_mappings"], tenant, integration, defaults)


async def load_statuses(ctx: StepContext, page: RawPage) -> int:
    rows, defaults = status_rows(_objects(page.payload, page, "the /status answer"), page)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _write_statuses(ctx, conn, rows, defaults)
    return len(rows)


async def load_project_statuses(ctx: StepContext, page: RawPage) -> int:
    """`{"project": {"id", "key"}, "issue_types": <the /project/{key}/statuses answer>}`."""
    payload = page.payload
    project = payload.get("project") if isinstance(payload, dict) else None
    if not isinstance(project, dict) or not project.get("id"):
        raise Reject(f"{_where(page)}: expected the project and its statuses")
    statuses: list[Json] = []
    pairs: list[Json] = []
    for itype in _objects(payload.get("issue_types"), page, "'issue_types'"):
        for status in _objects(itype.get("statuses", []), page, "'statuses'"):
            statuses.append(status)
            pairs.append({"status_ext": _text(status.get("id")), "wit_ext": _text(itype.get("id"))})
    rows, defaults = status_rows(statuses, page)
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _write_statuses(ctx, conn, rows, defaults)
        await conn.execute(
            SQL["jira.link_projects_statuses"], tenant, integration, str(project["id"]), pairs
        )
    return len(rows)


# -- custom fields -----------------------------------------------------------------------------


def _field_row(field_id: str, info: Mapping[str, Any], with_operations: bool) -> Json:
    schema = info.get("schema") if isinstance(info.get("schema"), dict) else None
    operations = info.get("operations")
    return {
        "external_id": field_id,
        "name": str(info.get("name") or field_id)[:255],
        "field_type": str((schema or {}).get("type") or "string")[:100],
        "schema": schema,
        "operations": operations if with_operations and isinstance(operations, list) else [],
    }


def field_rows(page: RawPage) -> tuple[list[Json], bool]:
    """Custom field rows of a /field, per-project createmeta or legacy createmeta page, each
    field once, and whether the page knows the fields' operations."""
    payload = page.payload
    found: dict[str, Mapping[str, Any]] = {}
    if page.type == "jira_fields":
        for field in _objects(payload, page, "the /field answer"):
            fid = str(field.get("id") or "")
            if fid.startswith("customfield_") or (field.get("custom") and fid):
                found.setdefault(fid, field)
        return [_field_row(f, found[f], False) for f in sorted(found)], False
    if not isinstance(payload, dict):
        raise Reject(f"{_where(page)}: expected create metadata (an object)")
    if page.type == "jira_createmeta_legacy":
        for project in _objects(payload.get("projects", []), page, "'projects'"):
            for itype in _objects(project.get("issuetypes", []), page, "'issuetypes'"):
                fields = itype.get("fields") or {}
                if not isinstance(fields, dict):
                    raise Reject(f"{_where(page)}: 'fields' of an issue type is not an object")
                for fid, info in fields.items():
                    if fid.startswith("customfield_") and isinstance(info, dict):
                        found.setdefault(fid, info)
    else:
        pages = payload.get("fields") or {}
        if not isinstance(pages, dict):
            raise Reject(f"{_where(page)}: 'fields' is not an object of issue types")
        for answers in pages.values():
            for answer in _objects(answers, page, "field pages"):
                for info in _objects(answer.get("fields", []), page, "'fields'"):
                    fid = str(info.get("fieldId") or info.get("key") or "")
                    if fid.startswith("customfield_"):
                        found.setdefault(fid, info)
    return [_field_row(f, found[f], True) for f in sorted(found)], True


async def load_custom_fields(ctx: StepContext, page: RawPage) -> int:
    rows, with_operations = field_rows(page)
    if not rows:
        return 0
    async with ctx.pool.acquire() as conn:
        await conn.fetch(
            SQL["jira.upsert_custom_fields"],
            ctx.run.tenant_id,
            ctx.integration.id,
            rows,
            with_operations,
        )
    return len(rows)
