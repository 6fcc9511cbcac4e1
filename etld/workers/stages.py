"""Stage handlers: jobs, extraction, transform and embedding, generic over sources.

Each handler loads the run a message belongs to, skips work for a run that is no
longer RUNNING or an item already settled (a redelivery), calls the source's step,
and reports the item done to the run ledger, which decides what happens next. The
effects of a step are idempotent, so a crash between "effects committed" and "item
marked done" only repeats harmless work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import orjson

from etld.config import Config
from etld.faults import crash_point
from etld.jobs.runs import Outgoing, RunContext, Runs
from etld.logs import get_logger
from etld.sources.base import (
    Integration,
    RawPage,
    Source,
    Step,
    StepContext,
    UnknownProvider,
    get_source,
)
from etld.store.queries import SQL
from etld.workers.errors import Reject
from etld.workers.pagecache import CachedPage, PageCache

log = get_logger(__name__)

EMBED_BATCH = 16  # ids per embedding message: the model's sweet spot on small machines
REPLAY_BATCH = 500  # stored pages queued per ledger transaction on re-transform
MAX_PUBLISHING = 8  # transform items of one extraction being published at once


class DeliveryLike(Protocol):
    @property
    def raw(self) -> dict[str, Any]: ...


Handler = Callable[[Any, Any], Awaitable[None]]


@dataclass
class StageServices:
    pool: asyncpg.Pool
    runs: Runs
    config: Config
    embeddings_enabled: bool = False
    pages: PageCache = field(default_factory=PageCache)


def page_body(payload: Any, verbatim: Mapping[str, bytes] | None = None) -> bytes:
    """A page's JSON text: the top-level values `verbatim` names exactly as they were
    received (never decoded and encoded again), everything else encoded here."""
    if not verbatim:
        return orjson.dumps(payload)
    if not isinstance(payload, dict):
        raise TypeError("a page with verbatim parts must be a JSON object")
    parts = [
        orjson.dumps(str(key)) + b":" + (verbatim.get(key) or orjson.dumps(value))
        for key, value in payload.items()
    ]
    return b"{" + b",".join(parts) + b"}"


async def insert_page(
    conn: asyncpg.Connection,
    run: RunContext,
    type_: str,
    body: bytes,
    item_count: int | None,
    page_key: str,
    step: str | None,
    checkpoint: tuple[str, Mapping[str, Any]] | None = None,
) -> tuple[int, bool]:
    """Store one page of a run, and the checkpoint that follows it if given; (raw id,
    whether this call inserted it). Storing a page key again is a no-op that returns the
    stored page's id (the checkpoint is saved either way)."""
    cp_key, cp_value = checkpoint if checkpoint is not None else (None, None)
    row = await conn.fetchrow(
        SQL["raw.store_page"],
        run.tenant_id,
        run.integration_id,
        run.job_id,
        run.run_id,
        type_,
        body,
        len(body),
        item_count,
        page_key,
        step,
        cp_key,
        dict(cp_value) if cp_value is not None else None,
    )
    raw_id: int | None = row["id"] if row is not None else None
    if raw_id is None:
        # A duplicate delivery stored the same page concurrently; the statement's snapshot
        # could not see that row, a new statement can.
        raw_id = await conn.fetchval(SQL["raw.page_id"], run.run_id, type_, page_key)
    if raw_id is None:
        raise RuntimeError(f"raw page {page_key} of run {run.run_id} vanished")
    return raw_id, row is not None and bool(row["inserted"])


async def read_page(conn: asyncpg.Connection, raw_id: int, tenant_id: int) -> RawPage | None:
    """A stored page of the tenant, parsed; None when there is no such page."""
    row = await conn.fetchrow(SQL["raw.get_for_tenant"], raw_id, tenant_id)
    if row is None:
        return None
    return RawPage(row["id"], row["type"], orjson.loads(row["raw_payload"]))


class _ExtractEmitter:
    """ExtractOutput for one extraction item: raw pages in, transform items out."""

    def __init__(self, services: StageServices, ctx: RunContext, step: str, item_key: str) -> None:
        self.services = services
        self.ctx = ctx
        self.step = step
        self.item_key = item_key
        self.api_calls = 0
        self.pages = 0
        # Transform items are published while the extraction goes on to its next page:
        # waiting for each broker confirm would put a round trip into every page's path.
        self._publishing: set[asyncio.Task[None]] = set()

    async def store_page(
        self,
        type_: str,
        payload: Any,
        page_key: str,
        *,
        item_count: int | None = None,
        verbatim: Mapping[str, bytes] | None = None,
        checkpoint: tuple[str, Mapping[str, Any]] | None = None,
    ) -> int:
        body = page_body(payload, verbatim)
        await self.services.pages.wait_for_room(len(body))
        runs = self.services.runs
        # The page, the item that transforms it and the cursor past it commit together: one
        # commit per page, never a stored page without its item, and never a cursor that is
        # ahead of (or behind) the pages stored.
        async with self.services.pool.acquire() as conn, conn.transaction():
            raw_id, inserted = await insert_page(
                conn, self.ctx, type_, body, item_count, page_key, self.step, checkpoint
            )
            outgoing = await runs.record(
                conn,
                self.ctx,
                self.item_key,
                [(f"t{raw_id}", self.step, "transform", {"raw_data_id": raw_id, "type": type_})],
            )
        crash_point("page_stored")
        if inserted:
            # Only a row this call wrote is known to hold exactly this payload.
            cached = CachedPage(self.ctx.tenant_id, type_, payload, len(body))
            self.services.pages.put(raw_id, cached)
        if outgoing:
            if len(self._publishing) >= MAX_PUBLISHING:
                await asyncio.wait(self._publishing, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(self._publish(outgoing))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
        self.pages += 1
        return raw_id

    async def _publish(self, outgoing: list[Outgoing]) -> None:
        try:
            await self.services.runs.publish(outgoing)
        except Exception as exc:
            # Committed items stay unpublished in the ledger; the outbox sweep publishes them.
            log.warning(
                "transform item not published, left to the outbox sweep",
                run_id=self.ctx.run_id,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def flush(self) -> None:
        """Wait for the transform items still being published."""
        while self._publishing:
            await asyncio.gather(*self._publishing, return_exceptions=True)

    async def follow_up(self, key: str, payload: dict[str, Any]) -> None:
        await self.services.runs.emit(
            self.ctx, self.item_key, [(key, self.step, "extraction", payload)]
        )

    def count_api_calls(self, calls: int) -> None:
        self.api_calls += calls


@dataclass
class _TransformCollector:
    """TransformOutput: gathers embedding requests, emitted after the load commits."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def embed(
        self, table_name: str, external_ids: Sequence[str], operation: str = "upsert"
    ) -> None:
        self.requests.extend((table_name, external_id, operation) for external_id in external_ids)


def _require(message: dict[str, Any], key: str) -> Any:
    value = message.get(key)
    if value is None:
        raise Reject(f"message has no {key}")
    return value


async def _integration(pool: asyncpg.Pool, integration_id: int) -> Integration:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["raw.integration"], integration_id)
    if row is None:
        raise Reject(f"integration {integration_id} no longer exists")
    return Integration.from_row(row)


def _source_step(ctx: RunContext, step_name: str) -> tuple[Source, Step]:
    try:
        source = get_source(ctx.provider)
        return source, source.step(step_name)
    except (UnknownProvider, KeyError) as exc:
        raise Reject(str(exc.args[0] if exc.args else exc)) from exc


class StageHandlers:
    """Builds the stage → handler mapping the consumer pool runs."""

    def __init__(self, services: StageServices) -> None:
        self.s = services

    def mapping(self) -> dict[str, Handler]:
        # The embedding stage's handler comes from the vectors package when embeddings
        # are enabled; without it transforms request no embeddings at all.
        return {
            "jobs": self.handle_job,
            "extraction": self.handle_extraction,
            "transform": self.handle_transform,
        }

    async def _live_item(self, message: dict[str, Any]) -> tuple[RunContext, str] | None:
        run_id = int(_require(message, "run_id"))
        item_key = str(_require(message, "work_id"))
        ctx = await self.s.runs.context(run_id)
        if ctx is None or not ctx.running:
            log.info("message of a run that is not running dropped", run_id=run_id, item=item_key)
            return None
        if await self.s.runs.item_done(run_id, item_key):
            log.debug("item already settled, redelivery ignored", run_id=run_id, item=item_key)
            return None
        return ctx, item_key

    async def handle_job(self, delivery: DeliveryLike, _: Any) -> None:
        message = delivery.raw
        run_id = message.get("run_id")
        if run_id is None:
            raise Reject("job message has no run_id (publish jobs through the scheduler)")
        await self.s.runs.start(int(run_id))

    async def handle_extraction(self, delivery: DeliveryLike, _: Any) -> None:
        live = await self._live_item(delivery.raw)
        if live is None:
            return
        ctx, item_key = live
        step_name = str(_require(delivery.raw, "step"))
        _, step = _source_step(ctx, step_name)
        if ctx.config.get("retransform"):
            records = await self._replay_pages(ctx, step_name, item_key)
            await self.s.runs.complete(ctx, item_key, records=records)
            return
        integration = await _integration(self.s.pool, ctx.integration_id)
        out = _ExtractEmitter(self.s, ctx, step_name, item_key)
        step_ctx = StepContext(ctx, integration, self.s.pool, self.s.config)
        try:
            await step.extract(step_ctx, delivery.raw, out)
        except BaseException as exc:
            # Calls made by a failed attempt still count against the source's budget.
            await self.s.runs.record_api_calls(ctx.run_id, out.api_calls)
            if not isinstance(exc, asyncio.CancelledError):
                await out.flush()  # cancelled: the publishing tasks finish on their own
            raise
        # An extraction item is done only once what it stored is on its way.
        await out.flush()
        await self.s.runs.complete(ctx, item_key, records=out.pages, api_calls=out.api_calls)

    async def _replay_pages(self, ctx: RunContext, step: str, item_key: str) -> int:
        """Re-transform: queue every stored page of the step instead of calling the source."""
        after, replayed = 0, 0
        while True:
            async with self.s.pool.acquire() as conn:
                ids = [
                    r["id"]
                    for r in await conn.fetch(
                        SQL["raw.replay_page_ids"], ctx.integration_id, step, after, REPLAY_BATCH
                    )
                ]
            if not ids:
                return replayed
            children = [
                (f"t{raw_id}", step, "transform", {"raw_data_id": raw_id}) for raw_id in ids
            ]
            await self.s.runs.emit(ctx, item_key, children)
            replayed += len(ids)
            after = ids[-1]

    async def handle_transform(self, delivery: DeliveryLike, _: Any) -> None:
        live = await self._live_item(delivery.raw)
        if live is None:
            return
        ctx, item_key = live
        step_name = str(_require(delivery.raw, "step"))
        raw_id = int(_require(delivery.raw, "raw_data_id"))
        _, step = _source_step(ctx, step_name)
        cached = self.s.pages.take(raw_id, ctx.tenant_id)
        page: RawPage | None
        if cached is not None:
            page = RawPage(raw_id, cached.type, cached.payload)
        else:
            async with self.s.pool.acquire() as conn:
                page = await read_page(conn, raw_id, ctx.tenant_id)
            if page is None:
                raise Reject(f"raw_extraction_data {raw_id} not found for tenant {ctx.tenant_id}")
        integration = await _integration(self.s.pool, ctx.integration_id)
        collector = _TransformCollector()
        step_ctx = StepContext(ctx, integration, self.s.pool, self.s.config)
        try:
            records = await step.transform(step_ctx, page, collector)
        except Reject as exc:
            async with self.s.pool.acquire() as conn:
                await conn.execute(SQL["raw.mark_failed"], raw_id, exc.reason)
            raise
        async with self.s.pool.acquire() as conn:
            await conn.execute(SQL["raw.mark_processed"], raw_id)
        crash_point("load_committed")
        if self.s.embeddings_enabled and collector.requests:
            await self.s.runs.emit(
                ctx, item_key, _embedding_children(step_name, collector.requests)
            )
        await self.s.runs.complete(ctx, item_key, records=records)


def _embedding_children(
    step: str, requests: list[tuple[str, str, str]]
) -> list[tuple[str, str, str, dict[str, Any]]]:
    children: list[tuple[str, str, str, dict[str, Any]]] = []
    groups: dict[tuple[str, str], list[str]] = {}
    for table, external_id, operation in requests:
        groups.setdefault((table, operation), []).append(external_id)
    for (table, operation), ids in groups.items():
        for start in range(0, len(ids), EMBED_BATCH):
            batch = ids[start : start + EMBED_BATCH]
            key = f"e:{table}:{operation}:{batch[0]}"
            children.append(
                (
                    key,
                    step,
                    "embedding",
                    {
                        "table_name": table,
                        "external_id": batch[0],
                        "external_ids": batch,
                        "operation": operation,
                    },
                )
            )
    return children
