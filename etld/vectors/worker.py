"""The embedding stage: loaded rows in, vectors in the store and rows in the bridge table.

One message names up to 16 records of one table (`external_ids`) and an operation. For
each record the text is built and hashed; a record whose bridge row already holds that
hash for the same model, variant and collection is skipped, so a re-sync that changed
nothing embeds nothing. The rest are embedded as one batch on the inference thread and
upserted under deterministic point ids (re-embedding overwrites). A delete operation, a
soft-deleted row (`deleted_at`), a vanished row or an empty text removes the point and
its bridge row.

Everything for one message happens in one transaction that holds advisory locks on its
records, so two consumers never interleave their writes for the same record and a
vector and its bridge row always describe the same text. The store is written before
the transaction commits: a crash in between leaves a stale hash, which only means the
record is embedded once more next time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from etld.jobs.runs import RunContext
from etld.logs import get_logger
from etld.store.queries import SQL
from etld.vectors.embedder import Embedder
from etld.vectors.store import VectorPoint, VectorStore, point_id
from etld.vectors.texts import TABLES, record_text, source_type, text_hash
from etld.workers.errors import Reject
from etld.workers.stages import StageServices

log = get_logger(__name__)

OPERATIONS = ("insert", "update", "upsert", "delete")


class DeliveryLike(Protocol):
    @property
    def raw(self) -> dict[str, Any]: ...


@dataclass
class EmbedOutcome:
    embedded: int = 0
    skipped: int = 0
    deleted: int = 0
    embedded_ids: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return self.embedded + self.deleted


class Vectorizer:
    """The embedding core, shared by the stage handler, the tests and the benchmark."""

    def __init__(self, pool: asyncpg.Pool, store: VectorStore, embedder: Embedder) -> None:
        self.pool = pool
        self.store = store
        self.embedder = embedder

    def collection(self, tenant_id: int) -> str:
        return self.store.collection(tenant_id, self.embedder.tag)

    async def process(
        self,
        tenant_id: int,
        integration_id: int,
        table: str,
        external_ids: Sequence[str],
        operation: str = "upsert",
    ) -> EmbedOutcome:
        if table not in TABLES:
            raise Reject(f"cannot embed table {table!r}; expected one of {', '.join(TABLES)}")
        if operation not in OPERATIONS:
            raise Reject(f"unknown embedding operation {operation!r}")
        keys = sorted({str(e) for e in external_ids})
        outcome = EmbedOutcome()
        if not keys:
            return outcome
        collection = self.collection(tenant_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(SQL["vectors.lock_records"], tenant_id, table, keys)
            rows = await conn.fetch(SQL[f"vectors.{table}"], tenant_id, integration_id, keys)
            bridge = {
                b["record_id"]: b
                for b in await conn.fetch(
                    SQL["vectors.bridge_rows"], tenant_id, table, [r["id"] for r in rows]
                )
            }
            found = {r["external_id"] for r in rows}
            missing = [k for k in keys if k not in found]
            removals: list[asyncpg.Record] = []
            if missing:
                removals += await conn.fetch(
                    SQL["vectors.orphan_bridge_rows"], tenant_id, table, missing
                )
            names: dict[str, str] = {}
            if table == "work_items" and rows and operation != "delete":
                names = {
                    r["slot"]: r["name"]
                    for r in await conn.fetch(SQL["vectors.field_names"], tenant_id, integration_id)
                }
            todo: list[tuple[asyncpg.Record, str, str]] = []
            moved: list[asyncpg.Record] = []
            for row in rows:
                previous = bridge.get(row["id"])
                gone = operation == "delete" or row["deleted_at"] is not None
                text = "" if gone else record_text(table, row, names)
                if not text:
                    if previous is not None:
                        removals.append(previous)
                    continue
                digest = text_hash(text)
                if previous is not None and self._current(previous, collection, digest):
                    outcome.skipped += 1
                    continue
                if previous is not None and previous["collection_name"] != collection:
                    moved.append(previous)  # another model or variant: never mix them
                todo.append((row, text, digest))
            if todo:
                await self._embed(conn, tenant_id, integration_id, table, collection, todo)
                outcome.embedded = len(todo)
                outcome.embedded_ids = [row["external_id"] for row, _, _ in todo]
            for old in moved:
                await self.store.delete(old["collection_name"], [str(old["point_id"])])
            if removals:
                await self._remove(conn, tenant_id, table, removals)
                outcome.deleted = len(removals)
        log.debug(
            "embedding batch done",
            table=table,
            embedded=outcome.embedded,
            skipped=outcome.skipped,
            deleted=outcome.deleted,
        )
        return outcome

    def _current(self, bridge: Mapping[str, Any], collection: str, digest: str) -> bool:
        return bool(
            bridge["text_hash"] == digest
            and bridge["model"] == self.embedder.model_id
            and bridge["variant"] == self.embedder.variant
            and bridge["collection_name"] == collection
        )

    async def _embed(
        self,
        conn: asyncpg.Connection,
        tenant_id: int,
        integration_id: int,
        table: str,
        collection: str,
        todo: list[tuple[asyncpg.Record, str, str]],
    ) -> None:
        vectors = await self.embedder.embed_async([text for _, text, _ in todo])
        points: list[VectorPoint] = []
        bridge_rows: list[dict[str, Any]] = []
        for (row, _, digest), vector in zip(todo, vectors, strict=True):
            pid = point_id(tenant_id, table, row["id"])
            kind = source_type(row["provider"], row["integration_name"])
            payload = {
                "tenant_id": tenant_id,
                "source_type": kind,
                "table": table,
                "record_id": row["id"],
                "external_id": row["external_id"],
                "integration_id": integration_id,
            }
            points.append(VectorPoint(pid, vector.tolist(), payload))
            bridge_rows.append(
                {
                    "record_id": row["id"],
                    "external_id": row["external_id"],
                    "source_type": kind,
                    "collection_name": collection,
                    "point_id": pid,
                    "model": self.embedder.model_id,
                    "variant": self.embedder.variant,
                    "text_hash": digest,
                }
            )
        await self.store.ensure_collection(collection, self.embedder.dimensions)
        await self.store.upsert(collection, points)
        await conn.execute(SQL["vectors.upsert_bridge"], tenant_id, table, bridge_rows)

    async def _remove(
        self, conn: asyncpg.Connection, tenant_id: int, table: str, rows: list[asyncpg.Record]
    ) -> None:
        by_collection: dict[str, list[str]] = {}
        for row in rows:
            by_collection.setdefault(row["collection_name"], []).append(str(row["point_id"]))
        for name, ids in by_collection.items():
            await self.store.delete(name, ids)
        await conn.execute(
            SQL["vectors.delete_bridge"], tenant_id, table, [r["record_id"] for r in rows]
        )


class EmbeddingStage:
    """The `embedding` stage handler: a run's item in, `Runs.complete` when it is done."""

    def __init__(
        self, services: StageServices, vectorizer: Vectorizer | Callable[[], Vectorizer]
    ) -> None:
        self.s = services
        # A callable when the model loads after the handler is built (the daemon's case).
        self._vectorizer = vectorizer

    @property
    def vectorizer(self) -> Vectorizer:
        v = self._vectorizer
        return v if isinstance(v, Vectorizer) else v()

    async def _live_item(self, message: dict[str, Any]) -> tuple[RunContext, str] | None:
        run_id, item_key = message.get("run_id"), message.get("work_id")
        if run_id is None or item_key is None:
            raise Reject("embedding message has no run_id or work_id")
        ctx = await self.s.runs.context(int(run_id))
        if ctx is None or not ctx.running:
            log.info("message of a run that is not running dropped", run_id=run_id)
            return None
        if await self.s.runs.item_done(ctx.run_id, str(item_key)):
            log.debug("item already settled, redelivery ignored", run_id=run_id, item=item_key)
            return None
        return ctx, str(item_key)

    async def handle(self, delivery: DeliveryLike, _: Any) -> None:
        message = delivery.raw
        live = await self._live_item(message)
        if live is None:
            return
        ctx, item_key = live
        table = message.get("table_name")
        ids = message.get("external_ids") or [message.get("external_id")]
        if not isinstance(table, str) or not all(isinstance(i, str | int) for i in ids):
            raise Reject("embedding message needs table_name and external_id(s)")
        outcome = await self.vectorizer.process(
            ctx.tenant_id,
            ctx.integration_id,
            table,
            [str(i) for i in ids],
            str(message.get("operation") or "upsert"),
        )
        await self.s.runs.complete(ctx, item_key, records=outcome.records)
