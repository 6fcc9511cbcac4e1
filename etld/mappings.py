"""What a tenant maps: custom fields into work_items columns, statuses into flow categories.

Custom fields: one `custom_fields_mapping` row per (tenant, integration) names the field that
fills each slot — `team`, `code_changed`, `story_points` and `custom_field_01`..`20`, the fixed
allow-list `SLOTS`. A field fills one slot at most, and only fields discovered for the same
integration qualify. Columns follow a new mapping when the stored pages are transformed again
(a re-transform run); nothing here calls the source.

Statuses: a user mapping (`source = 'user'`) places a status in a flow category. Because the
workflow metrics depend only on the status history, which `changelogs` keeps, a remap is
applied by recomputing the metrics of the items whose history passes through a moved status,
with `compute_workflow` under the new mapping, in batches; again without calling the source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from etld.logs import get_logger
from etld.metrics.workflow import (
    FLOW_CATEGORIES,
    Transition,
    WorkflowMetrics,
    compute_workflow,
    default_flow_category,
)
from etld.sources.jira.transform_issues import CUSTOM_SLOTS
from etld.sources.jira.transform_issues import SLOTS as TRANSFORM_SLOTS
from etld.store.queries import SQL

log = get_logger(__name__)

# Slot → custom_fields_mapping column, in the order the mapping queries take them.
SLOT_COLUMNS: Final[dict[str, str]] = {
    "team": "team_field_id",
    "code_changed": "code_changed_field_id",
    "story_points": "story_points_field_id",
    **{slot: f"{slot}_id" for slot in CUSTOM_SLOTS},
}
SLOTS: Final[tuple[str, ...]] = tuple(SLOT_COLUMNS)
assert set(SLOTS) == set(TRANSFORM_SLOTS), "the mapping and the transform disagree on slots"

RECOMPUTE_BATCH: Final = 1_000
# A to-status the statuses table no longer knows (its row was deleted): like any status
# missing from the mapping, it gets the default category.
_UNKNOWN_STATUS: Final = "?"


class MappingError(ValueError):
    """A mapping request that cannot be applied; the message says why (shown to the user)."""


@dataclass(frozen=True)
class IntegrationRef:
    id: int
    tenant_id: int
    name: str
    provider: str
    active: bool


async def get_integration(conn: asyncpg.Connection, integration_id: int) -> IntegrationRef | None:
    row = await conn.fetchrow(SQL["mappings.integration"], integration_id)
    if row is None:
        return None
    return IntegrationRef(row["id"], row["tenant_id"], row["name"], row["provider"], row["active"])


async def job_of(conn: asyncpg.Connection, integ: IntegrationRef) -> int | None:
    job_id = await conn.fetchval(SQL["mappings.job_of_integration"], integ.tenant_id, integ.id)
    return int(job_id) if job_id is not None else None


# -- custom fields -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    id: int
    external_id: str
    name: str
    field_type: str
    schema: Mapping[str, Any]
    operations: list[Any]
    active: bool
    last_updated_at: datetime

    def brief(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "name": self.name,
            "field_type": self.field_type,
        }


async def list_fields(conn: asyncpg.Connection, integ: IntegrationRef) -> list[Field]:
    rows = await conn.fetch(SQL["mappings.fields"], integ.tenant_id, integ.id)
    return [
        Field(
            r["id"],
            r["external_id"],
            r["name"],
            r["field_type"],
            r["schema"] or {},
            list(r["operations"] or []),
            r["active"],
            r["last_updated_at"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class StoredMapping:
    slots: dict[str, int | None]  # slot -> custom_fields.id
    configured: bool
    active: bool
    updated_at: datetime | None


async def read_mapping(conn: asyncpg.Connection, integ: IntegrationRef) -> StoredMapping:
    row = await conn.fetchrow(SQL["mappings.mapping"], integ.tenant_id, integ.id)
    if row is None:
        return StoredMapping(dict.fromkeys(SLOTS), False, False, None)
    slots = {slot: row[column] for slot, column in SLOT_COLUMNS.items()}
    return StoredMapping(slots, True, row["active"], row["last_updated_at"])


def resolve_mapping(
    body: Mapping[str, Any], fields: Sequence[Field], integration_name: str
) -> tuple[dict[str, int | None], list[str]]:
    """Slot → field id from a request body whose slots name fields by id or external id.

    Every problem is reported at once (MappingError, messages joined by "; "). A slot the
    body leaves out is emptied: the body is the whole mapping. Returns warnings too.
    """
    by_id = {f.id: f for f in fields}
    by_external = {f.external_id: f for f in fields}
    problems: list[str] = []
    warnings: list[str] = []
    resolved: dict[str, int | None] = dict.fromkeys(SLOTS)
    holder: dict[int, str] = {}  # field id -> first slot it fills
    for slot in SLOTS:
        ref = body.get(slot)
        if ref is None:
            continue
        field: Field | None = None
        if isinstance(ref, str):
            field = by_external.get(ref.strip())
        elif isinstance(ref, int) and not isinstance(ref, bool):
            field = by_id.get(ref)
        else:
            problems.append(f"{slot} must be a custom field id, an external id or null")
            continue
        if field is None:
            problems.append(f"unknown custom field {ref} for integration {integration_name}")
            continue
        first = holder.get(field.id)
        if first is not None:
            problems.append(
                f"custom field {field.external_id} ({field.name}) is mapped to both {first} "
                f"and {slot}; a field may fill one slot only"
            )
            continue
        holder[field.id] = slot
        resolved[slot] = field.id
        if slot == "story_points" and field.field_type != "number":
            warnings.append(
                f"story_points expects a number field; {field.external_id} is "
                f"{field.field_type}, so values that are not numbers will be empty"
            )
    if problems:
        raise MappingError("; ".join(problems))
    return resolved, warnings


def unknown_keys(body: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    known = set(SLOTS) | set(allowed)
    return sorted(k for k in body if k not in known)


async def save_mapping(
    conn: asyncpg.Connection, integ: IntegrationRef, resolved: Mapping[str, int | None]
) -> None:
    values = [resolved.get(slot) for slot in SLOTS]
    await conn.execute(SQL["mappings.save_mapping"], integ.tenant_id, integ.id, *values)
    log.info(
        "custom field mapping saved",
        tenant_id=integ.tenant_id,
        integration_id=integ.id,
        mapped=sum(v is not None for v in values),
    )


# -- statuses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    id: int
    external_id: str
    name: str
    category: str | None  # Jira status category key
    flow_category: str  # in effect: the stored mapping, else the Jira category's default
    source: str  # user | default
    updated_at: datetime | None


async def list_statuses(conn: asyncpg.Connection, integ: IntegrationRef) -> list[StatusRow]:
    return [
        StatusRow(
            r["id"],
            r["external_id"],
            r["name"],
            r["category"],
            r["flow_category"] or default_flow_category(r["category"]),
            r["source"] or "default",
            r["updated_at"],
        )
        for r in await conn.fetch(SQL["mappings.statuses"], integ.tenant_id, integ.id)
    ]


@dataclass(frozen=True)
class StatusChange:
    status: StatusRow
    flow_category: str
    source: str  # user, or default when the request hands the status back to Jira's category

    @property
    def moves(self) -> bool:
        return self.flow_category != self.status.flow_category


def resolve_status_changes(
    entries: Any, statuses: Sequence[StatusRow], integration_name: str
) -> list[StatusChange]:
    """`[{"status_id": id | "jira id", "flow_category": category | null}]` checked against the
    integration's statuses; null hands a status back to its Jira category's default."""
    if not isinstance(entries, list) or not entries:
        raise MappingError("mappings must be a non-empty list of {status_id, flow_category}")
    by_id = {s.id: s for s in statuses}
    by_external = {s.external_id: s for s in statuses}
    problems: list[str] = []
    changes: dict[int, StatusChange] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"status_id", "flow_category"}:
            problems.append(f"mappings[{n}] must be an object with status_id and flow_category")
            continue
        ref, category = entry.get("status_id"), entry.get("flow_category")
        status: StatusRow | None = None
        if isinstance(ref, int) and not isinstance(ref, bool):
            status = by_id.get(ref)
        elif isinstance(ref, str):
            status = by_external.get(ref.strip())
        if status is None:
            problems.append(f"unknown status {ref} for integration {integration_name}")
            continue
        if category is not None and category not in FLOW_CATEGORIES:
            problems.append(
                f"flow_category of status {status.name} must be one of "
                f"{', '.join(FLOW_CATEGORIES)} (or null for the Jira default), not {category!r}"
            )
            continue
        if status.id in changes:
            problems.append(f"status {status.name} is listed more than once")
            continue
        if category is None:
            changes[status.id] = StatusChange(
                status, default_flow_category(status.category), "default"
            )
        else:
            changes[status.id] = StatusChange(status, category, "user")
    if problems:
        raise MappingError("; ".join(problems))
    return list(changes.values())


async def save_status_changes(
    conn: asyncpg.Connection, integ: IntegrationRef, entries: Any
) -> list[StatusChange]:
    """Check and save a request's status mappings (MappingError when refused).

    Saves of one integration take turns (a transaction lock), so whether a status moved is
    judged against the mapping really in place, never one another request is replacing.
    """
    async with conn.transaction():
        await conn.execute(SQL["mappings.lock_status_save"], integ.id)
        changes = resolve_status_changes(entries, await list_statuses(conn, integ), integ.name)
        rows = [
            {"status_id": c.status.id, "flow_category": c.flow_category, "source": c.source}
            for c in changes
        ]
        await conn.execute(SQL["mappings.save_status_mappings"], integ.tenant_id, integ.id, rows)
    log.info(
        "status mapping saved",
        tenant_id=integ.tenant_id,
        integration_id=integ.id,
        statuses=len(rows),
        moved=sum(c.moves for c in changes),
    )
    return changes


async def items_through(
    conn: asyncpg.Connection, integ: IntegrationRef, status_ids: Sequence[int]
) -> list[int]:
    """Work items whose history touches any of the statuses (sorted ids)."""
    if not status_ids:
        return []
    rows = await conn.fetch(
        SQL["mappings.items_through_statuses"], integ.tenant_id, integ.id, list(status_ids)
    )
    return [r["work_item_id"] for r in rows]


# -- recomputing metrics -------------------------------------------------------------------


def flow_by_status_id(statuses: Iterable[StatusRow]) -> dict[str, str]:
    """Status row id (as text, the form changelog rows are read in) → flow category."""
    return {str(s.id): s.flow_category for s in statuses}


def metrics_from_changelogs(
    created: datetime | None, changes: Sequence[Mapping[str, Any]], flow: Mapping[str, str]
) -> WorkflowMetrics:
    """An item's metrics from its stored changelog rows, as the transform computes them.

    The transform starts the first stay at the issue's creation, or at its earliest
    transition when Jira gave no creation time; the same is done here.
    """
    moves = [
        Transition(
            str(c["external_id"]),
            c["transition_change_date"],
            str(c["from_status_id"]) if c["from_status_id"] is not None else None,
            str(c["to_status_id"]) if c["to_status_id"] is not None else _UNKNOWN_STATUS,
        )
        for c in changes
    ]
    start = created if created is not None else min(t.at for t in moves)
    metrics, _ = compute_workflow(start, moves, flow)
    return metrics


@dataclass(frozen=True)
class RecomputeSummary:
    items_recomputed: int
    items_updated: int


async def recompute_metrics(
    pool: asyncpg.Pool,
    integ: IntegrationRef,
    item_ids: Sequence[int],
    *,
    batch: int | None = None,
) -> RecomputeSummary:
    """Recompute the 15 metrics of `item_ids` under the mapping in effect, `batch` items
    (default RECOMPUTE_BATCH) per read and per update statement, each committed on its own.

    Recomputes of one integration run one at a time (an advisory lock), and the mapping is
    read once the lock is held, so the last one to run always uses the newest mapping.
    """
    size = batch or RECOMPUTE_BATCH
    recomputed = updated = 0
    async with pool.acquire() as conn:
        await conn.execute(SQL["mappings.lock_remap"], integ.id)
        try:
            flow = flow_by_status_id(await list_statuses(conn, integ))
            for start in range(0, len(item_ids), size):
                chunk = list(item_ids[start : start + size])
                done, written = await _recompute_batch(conn, integ, chunk, flow)
                recomputed += done
                updated += written
        finally:
            await conn.execute(SQL["mappings.unlock_remap"], integ.id)
    log.info(
        "workflow metrics recomputed",
        tenant_id=integ.tenant_id,
        integration_id=integ.id,
        items=recomputed,
        updated=updated,
    )
    return RecomputeSummary(recomputed, updated)


async def _recompute_batch(
    conn: asyncpg.Connection, integ: IntegrationRef, ids: list[int], flow: Mapping[str, str]
) -> tuple[int, int]:
    created = {
        r["id"]: r["created"]
        for r in await conn.fetch(SQL["mappings.items_created"], integ.tenant_id, integ.id, ids)
    }
    history: dict[int, list[Mapping[str, Any]]] = {}
    for r in await conn.fetch(SQL["mappings.changelogs_of_items"], integ.tenant_id, ids):
        history.setdefault(r["work_item_id"], []).append(r)
    rows = []
    for item_id, item_created in created.items():
        changes = history.get(item_id, [])
        if not changes and item_created is None:
            continue  # nothing to place the metrics on; they are all empty anyway
        metrics = metrics_from_changelogs(item_created, changes, flow)
        rows.append({"id": item_id, **metrics.as_row()})
    if not rows:
        return 0, 0
    written = await conn.fetch(SQL["mappings.update_metrics"], integ.tenant_id, integ.id, rows)
    return len(rows), len(written)
