"""Work items as the admin UI and the JSON API read them: filtered pages and one item.

Filters: project, work item type, status, a text matched against key, summary and
description, and a value of a mapped slot (`team` or `custom_field_01..20`, a fixed list;
the query picks the column with a CASE, so no column name ever comes from input). One
item comes with its status transitions (the changelog), the 15 workflow metrics, its mapped
custom fields and its linked pull requests. Every query takes the tenant, so another
tenant's item is simply not found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import asyncpg

from etld.sources.jira.transform_issues import CUSTOM_SLOTS
from etld.store.queries import SQL

FILTER_SLOTS: Final[tuple[str, ...]] = ("team", *CUSTOM_SLOTS)
METRICS: Final[tuple[str, ...]] = (
    "work_first_committed_at",
    "work_first_started_at",
    "work_last_started_at",
    "work_first_completed_at",
    "work_last_completed_at",
    "total_work_starts",
    "total_completions",
    "total_backlog_returns",
    "total_work_time_seconds",
    "total_review_time_seconds",
    "total_cycle_time_seconds",
    "total_lead_time_seconds",
    "workflow_complexity_score",
    "rework_indicator",
    "direct_completion",
)
_FIELDS: Final[tuple[str, ...]] = (
    "id",
    "tenant_id",
    "integration_id",
    "integration_name",
    "external_id",
    "key",
    "summary",
    "description",
    "priority",
    "assignee",
    "reporter",
    "labels",
    "parent_key",
    "resolution",
    "created",
    "updated",
    "resolved",
    "due_date",
    "project_key",
    "project_name",
    "type_name",
    "status_name",
    "status_category",
    "team",
    "story_points",
    "code_changed",
)


class FilterError(ValueError):
    """A filter value that cannot be used; the message says which."""


@dataclass(frozen=True)
class Filters:
    project_id: int | None = None
    type_id: int | None = None
    status_id: int | None = None
    text: str | None = None
    field: str | None = None  # a FILTER_SLOTS name
    value: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        def number(name: str) -> int | None:
            raw = (query.get(name) or "").strip()
            if not raw:
                return None
            if not raw.isdigit() or len(raw) > 18:
                raise FilterError(f"{name} must be an id")
            return int(raw)

        field = (query.get("field") or "").strip() or None
        value = (query.get("value") or "").strip() or None
        if field is not None and field not in FILTER_SLOTS:
            raise FilterError(f"field must be one of {', '.join(FILTER_SLOTS)}")
        if value is not None and field is None:
            raise FilterError("value needs field (which custom field to match)")
        text = (query.get("q") or "").strip() or None
        if text is not None and len(text) > 200:
            raise FilterError("q must be at most 200 characters")
        return cls(
            project_id=number("project_id"),
            type_id=number("type_id"),
            status_id=number("status_id"),
            text=text,
            field=field if value is not None else None,
            value=value,
        )

    def args(self) -> tuple[Any, ...]:
        return (
            self.project_id,
            self.type_id,
            self.status_id,
            _like(self.text),
            self.field,
            _like(self.value),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "type_id": self.type_id,
            "status_id": self.status_id,
            "q": self.text,
            "field": self.field,
            "value": self.value,
        }


def _like(text: str | None) -> str | None:
    if text is None:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_page(
    pool: asyncpg.Pool, tenant_id: int, filters: Filters, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the tenant's work items, newest update first, and the total count."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            SQL["ui.work_items_page"], tenant_id, *filters.args(), limit, offset
        )
        total = await conn.fetchval(SQL["ui.work_items_count"], tenant_id, *filters.args())
    return [plain(dict(r)) for r in rows], int(total)


async def filter_choices(pool: asyncpg.Pool, tenant_id: int) -> dict[str, Any]:
    """Projects, types and statuses to filter by, and the labels of the mapped slots."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(SQL["ui.work_item_filters"], tenant_id)
        labels = await slot_labels(conn, tenant_id, None)
    out: dict[str, list[dict[str, Any]]] = {"project": [], "type": [], "status": []}
    for row in rows:
        out[row["kind"]].append({"id": row["id"], "label": row["label"]})
    slots = [{"slot": s, "label": f"{s} · {labels[s]}" if s in labels else s} for s in FILTER_SLOTS]
    return {"projects": out["project"], "types": out["type"], "statuses": out["status"],
            "slots": slots}  # fmt: skip


async def slot_labels(
    conn: asyncpg.Connection, tenant_id: int, integration_id: int | None
) -> dict[str, str]:
    rows = await conn.fetch(SQL["ui.slot_labels"], tenant_id, integration_id)
    return {r["slot"]: r["names"] for r in rows}


async def item_detail(
    pool: asyncpg.Pool, item_id: int, tenant_id: int | None
) -> dict[str, Any] | None:
    """One item with transitions, metrics, mapped fields and pull requests; None: not found."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["ui.work_item"], item_id, tenant_id)
        if row is None:
            return None
        owner = row["tenant_id"]
        transitions = await conn.fetch(SQL["ui.work_item_transitions"], owner, item_id)
        prs = await conn.fetch(SQL["ui.work_item_prs"], owner, item_id)
        labels = await slot_labels(conn, owner, row["integration_id"])
    item = plain({name: row[name] for name in _FIELDS})
    item["metrics"] = plain({name: row[name] for name in METRICS})
    item["custom_fields"] = [
        {"slot": slot, "field": labels.get(slot), "value": row[slot]}
        for slot in CUSTOM_SLOTS
        if row[slot] is not None
    ]
    item["custom_fields_overflow"] = row["custom_fields_overflow"] or {}
    item["transitions"] = [plain(dict(t)) for t in transitions]
    item["pull_requests"] = [plain(dict(p)) for p in prs]
    return item


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready values: timestamps and dates as ISO text."""
    return {k: v.isoformat() if isinstance(v, datetime | date) else v for k, v in row.items()}
