"""A stored REST page into rows: mapped into work_items, or kept whole in the stream's table.

Records are found again at the stream's records path and keyed by their primary key (the
external id; the last of a page wins when one repeats). With a mapping, each record becomes
a work_items row: text columns take scalars as text and anything else as JSON text; status
and type names become the integration's statuses and work item types; times are ISO 8601 or
epoch seconds; labels a list or a comma-separated string. Inserted and changed rows get
embeddings. Without a mapping, each record is upserted whole into `rest_<integration id>_
<stream>`, created on first use; a page stored earlier never replaces a later page's record.

Both loads are single statements per page and idempotent, so a page transformed again, or
replayed by a re-transform run, changes nothing that is already current.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson

from etld.logs import get_logger
from etld.sources.base import RawPage, StepContext, TransformOutput
from etld.sources.rest.model import TEXT_TARGETS, TIME_TARGETS, Stream, dig
from etld.store.queries import SQL
from etld.workers.errors import Reject

log = get_logger(__name__)

Json = dict[str, Any]
_TABLE = re.compile(r"^rest_[0-9]{1,19}_[a-z][a-z0-9_]{0,39}$")


# -- records --------------------------------------------------------------------------------


def keyed_records(page: RawPage, stream: Stream) -> dict[str, Json]:
    """external id -> record, for every record of a stored page; Reject when misshapen."""
    where = f"raw page {page.id} ({page.type})"
    found = dig(page.payload, stream.records)
    if not isinstance(found, list):
        raise Reject(f"{where}: {stream.records or 'the page'} is not a list of records")
    out: dict[str, Json] = {}
    for index, record in enumerate(found):
        if not isinstance(record, dict):
            raise Reject(f"{where}: record {index} is not an object")
        key = dig(record, stream.primary_key)
        if key is None or isinstance(key, bool | dict | list) or str(key) == "":
            raise Reject(f"{where}: record {index} has no primary key {stream.primary_key!r}")
        out[str(key)] = record
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return orjson.dumps(value).decode()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 (Z or an offset; naive means UTC) or epoch seconds; None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value  # milliseconds are that large
        return datetime.fromtimestamp(seconds, UTC)
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _date(value: Any) -> date | None:
    moment = parse_time(value)
    if moment is not None:
        return moment.date()
    try:
        return date.fromisoformat(str(value)[:10]) if value is not None else None
    except ValueError:
        return None


def _labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [text for item in value if (text := _text(item))]
    return [_text(value) or ""]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    if isinstance(value, int | float):
        return bool(value)
    return None


def mapped_row(external_id: str, record: Json, mapping: tuple[tuple[str, str], ...]) -> Json:
    """The work_items row of one record (keys as in rest.upsert_work_items)."""
    row: Json = {"external_id": external_id, "key": external_id, "labels": []}
    for target, path in mapping:
        value = dig(record, path)
        if target in TEXT_TARGETS:
            row[target] = _text(value)
        elif target in TIME_TARGETS:
            moment = parse_time(value)
            row[target] = moment.isoformat() if moment is not None else None
        elif target == "labels":
            row[target] = _labels(value)
        elif target == "due_date":
            day = _date(value)
            row[target] = day.isoformat() if day is not None else None
        elif target == "story_points":
            row[target] = _number(value)
        elif target == "code_changed":
            row[target] = _boolean(value)
    if not row.get("key"):
        row["key"] = external_id
    row["source_hash"] = hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return row


# -- loads ----------------------------------------------------------------------------------


async def load_page(ctx: StepContext, stream: Stream, page: RawPage, out: TransformOutput) -> int:
    records = keyed_records(page, stream)
    if not records:
        return 0
    if stream.mapping is not None:
        return await _load_work_items(ctx, stream.mapping, records, out)
    return await _load_raw(ctx, stream, page.id, records)


async def _load_work_items(
    ctx: StepContext,
    mapping: tuple[tuple[str, str], ...],
    records: dict[str, Json],
    out: TransformOutput,
) -> int:
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    rows = [mapped_row(external_id, record, mapping) for external_id, record in records.items()]
    statuses = sorted({r["status"] for r in rows if r.get("status")})
    types = sorted({r["type"] for r in rows if r.get("type")})
    async with ctx.pool.acquire() as conn, conn.transaction():
        if statuses:
            await conn.execute(SQL["rest.upsert_statuses"], tenant, integration, statuses)
        if types:
            await conn.execute(SQL["rest.upsert_wits"], tenant, integration, types)
        written = await conn.fetch(SQL["rest.upsert_work_items"], tenant, integration, rows)
    inserted = [r["external_id"] for r in written if r["inserted"]]
    updated = [r["external_id"] for r in written if not r["inserted"]]
    if inserted:
        out.embed("work_items", inserted, "insert")
    if updated:
        out.embed("work_items", updated, "update")
    return len(rows)


def _named(statement: str, table: str) -> str:
    """A raw-table statement for `table`, which `raw_table` built and quoted."""
    return statement.replace("{table}", table)


def raw_table(integration_id: int, stream: str) -> str:
    """The quoted name of a stream's raw table, built from validated parts only."""
    name = f"rest_{integration_id}_{stream}"
    if not _TABLE.match(name):
        raise Reject(f"stream name {stream!r} cannot name a table")
    return f'"{name}"'


async def ensure_raw_table(
    conn: asyncpg.Connection, tenant_id: int, integration_id: int, stream: str
) -> str:
    table = raw_table(integration_id, stream)
    bare = table.strip('"')
    if await conn.fetchval(SQL["rest.raw_table_exists"], table):
        return table
    async with conn.transaction():
        await conn.execute(SQL["rest.lock_raw_table"], bare)
        await conn.execute(_named(SQL["rest.create_raw_table"], table))
        index = f'"{bare[:50]}_integration_idx"'
        await conn.execute(_named(SQL["rest.index_raw_table"], table).replace("{index}", index))
        await conn.execute(SQL["rest.register_raw_table"], integration_id, stream, tenant_id, bare)
    log.info("raw table created", table=bare)
    return table


async def _load_raw(ctx: StepContext, stream: Stream, raw_id: int, records: dict[str, Json]) -> int:
    tenant, integration = ctx.run.tenant_id, ctx.integration.id
    rows = [{"external_id": key, "payload": record} for key, record in records.items()]
    async with ctx.pool.acquire() as conn:
        table = await ensure_raw_table(conn, tenant, integration, stream.name)
        statement = _named(SQL["rest.upsert_raw_rows"], table)
        await conn.fetch(statement, tenant, integration, raw_id, rows)
    return len(rows)
