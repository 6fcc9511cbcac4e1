"""Dead letters: record, list, requeue and purge.

The `dead_letters` table is the record of truth. The broker's `etl.failed`
queue keeps copies for people who look there, but it holds at most 1000
messages for 24 hours; every dead letter is written to PostgreSQL first, so
nothing is lost when it overflows. Requeue reads the table, publishes the
original bytes back to the original queue with a fresh attempt count, and marks
the row `requeued`; purge marks rows `purged` (they stay for history).

These functions are the library the CLI (`etld dlq ...`) and the web API use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson

from etld.broker.connection import BrokerConnection
from etld.broker.publish import Publisher, PublishError
from etld.broker.topology import FAILED_QUEUE, parse_queue
from etld.logs import get_logger
from etld.messages import STAGE_KINDS
from etld.store.queries import SQL

log = get_logger(__name__)

STATUSES = ("dead", "requeued", "purged")
# Headers that describe a past life of the message; a requeued message starts clean.
_STALE_HEADER_PREFIXES = ("x-death", "x-first-death", "x-last-death", "x-etld-")
REQUEUED_FROM_HEADER = "x-etld-requeued-from"


@dataclass(frozen=True)
class NewDeadLetter:
    """What the runner knows about a message it gives up on."""

    queue: str
    reason: str
    body: bytes
    routing_key: str | None = None
    stage: str | None = None
    message_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    attempts: int = 0
    headers: Mapping[str, Any] = field(default_factory=dict)
    tenant_id: int | None = None
    job_id: int | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """One row of `dead_letters`."""

    id: int
    tenant_id: int | None
    job_id: int | None
    run_id: int | None
    queue: str
    routing_key: str | None
    stage: str | None
    message_type: str | None
    reason: str
    error: str | None
    traceback: str | None
    attempts: int
    headers: dict[str, Any]
    body: bytes
    status: str
    requeue_count: int
    created_at: datetime
    requeued_at: datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> DeadLetter:
        return cls(**dict(record.items()))

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view for listings: the body as text when it is text."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("body", "traceback")}
        out["created_at"] = self.created_at.isoformat()
        out["requeued_at"] = self.requeued_at.isoformat() if self.requeued_at else None
        out["body"] = self.body.decode("utf-8", errors="replace")
        return out


@dataclass
class RequeueResult:
    requeued: list[int] = field(default_factory=list)
    # Ids that are not (or no longer) dead, or that another requeue holds right now.
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PurgeResult:
    rows: int
    # Messages dropped from etl.failed; None when the broker queue was left alone.
    broker_messages: int | None


def jsonable(value: Any) -> Any:
    """AMQP header values (bytes, datetimes, nested tables) as JSON for the jsonb column."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


async def record(pool: asyncpg.Pool, letter: NewDeadLetter) -> int:
    """Store a dead letter; returns its id."""
    dead_id: int = await pool.fetchval(
        SQL["dlq.insert"],
        letter.tenant_id,
        letter.job_id,
        letter.run_id,
        letter.queue,
        letter.routing_key,
        letter.stage,
        letter.message_type,
        letter.reason,
        letter.error,
        letter.traceback,
        letter.attempts,
        jsonable(letter.headers),
        letter.body,
    )
    return dead_id


async def list_dead_letters(
    pool: asyncpg.Pool,
    *,
    tenant_id: int | None = None,
    queue: str | None = None,
    status: str | None = "dead",
    limit: int = 100,
    before_id: int | None = None,
) -> list[DeadLetter]:
    """Newest first. `status=None` lists every status; `before_id` pages backwards."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    rows = await pool.fetch(SQL["dlq.list"], tenant_id, queue, status, before_id, limit)
    return [DeadLetter.from_record(row) for row in rows]


async def get_dead_letter(pool: asyncpg.Pool, dead_id: int) -> DeadLetter | None:
    row = await pool.fetchrow(SQL["dlq.get"], dead_id)
    return DeadLetter.from_record(row) if row else None


async def dead_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Dead letters waiting for an operator, per original queue."""
    return {row["queue"]: row["dead"] for row in await pool.fetch(SQL["dlq.counts"])}


async def resolve_tenant(pool: asyncpg.Pool, text: str) -> int | None:
    """A tenant given on the command line: its id, or its name."""
    if text.isdigit():
        return int(text)
    tenant_id: int | None = await pool.fetchval(SQL["dlq.tenant_by_name"], text)
    return tenant_id


def _fresh_headers(letter: DeadLetter) -> dict[str, Any]:
    headers = {
        key: value
        for key, value in letter.headers.items()
        if not key.startswith(_STALE_HEADER_PREFIXES)
    }
    headers[REQUEUED_FROM_HEADER] = letter.id
    return headers


async def _publish_back(publisher: Publisher, letter: DeadLetter) -> None:
    parsed = parse_queue(letter.queue)
    await publisher.publish_raw(
        letter.body,
        routing_key=letter.queue,
        headers=_fresh_headers(letter),
        message_type=STAGE_KINDS[parsed[0]] if parsed else None,
    )


async def _requeue_rows(
    conn: asyncpg.Connection, publisher: Publisher, rows: Sequence[asyncpg.Record]
) -> RequeueResult:
    """Publish locked rows back and mark the published ones, in the caller's transaction."""
    result = RequeueResult()
    letters = [DeadLetter.from_record(row) for row in rows]
    outcomes = await asyncio.gather(
        *(_publish_back(publisher, letter) for letter in letters), return_exceptions=True
    )
    for letter, outcome in zip(letters, outcomes, strict=True):
        if isinstance(outcome, PublishError):
            result.failed[letter.id] = str(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            result.requeued.append(letter.id)
    if result.requeued:
        await conn.execute(SQL["dlq.mark_requeued"], result.requeued)
    return result


async def requeue(
    pool: asyncpg.Pool,
    publisher: Publisher,
    ids: Sequence[int] | None = None,
    *,
    all_dead: bool = False,
    tenant_id: int | None = None,
    queue: str | None = None,
    batch_size: int = 200,
) -> RequeueResult:
    """Publish dead letters back to their queues: the given `ids`, or with `all_dead`
    every dead one (narrowed by tenant and queue). A message whose publish is not
    confirmed stays dead and is reported in `failed`."""
    if (ids is None) == (not all_dead):
        raise ValueError("give either ids or all_dead=True")
    total = RequeueResult()
    if ids is not None:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(SQL["dlq.lock_by_ids"], list(ids))
            total = await _requeue_rows(conn, publisher, rows)
        done = set(total.requeued) | set(total.failed)
        total.skipped = [i for i in ids if i not in done]
    else:
        after = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(SQL["dlq.lock_batch"], tenant_id, queue, after, batch_size)
                if not rows:
                    break
                part = await _requeue_rows(conn, publisher, rows)
            total.requeued += part.requeued
            total.failed.update(part.failed)
            after = rows[-1]["id"]
    if total.requeued:
        log.info("dead letters requeued", count=len(total.requeued), failed=len(total.failed))
    return total


async def purge(
    pool: asyncpg.Pool,
    *,
    tenant_id: int | None = None,
    queue: str | None = None,
    broker: BrokerConnection | None = None,
) -> PurgeResult:
    """Mark dead letters `purged`. Without filters, and given a broker connection, also
    empty etl.failed (its copies cannot be selected by tenant or queue)."""
    status = await pool.execute(SQL["dlq.purge"], tenant_id, queue)
    rows = int(status.split()[-1])
    broker_messages: int | None = None
    if broker is not None and tenant_id is None and queue is None:
        channel = await broker.connection.channel(publisher_confirms=False)
        try:
            purged = await channel.queue_purge(FAILED_QUEUE)
            broker_messages = int(purged.message_count or 0)
        finally:
            await channel.close()
    log.info("dead letters purged", rows=rows, broker_messages=broker_messages)
    return PurgeResult(rows, broker_messages)


def decode_body(letter: DeadLetter) -> Any:
    """The body as JSON when it parses, else None (for display)."""
    try:
        return orjson.loads(letter.body)
    except orjson.JSONDecodeError:
        return None
