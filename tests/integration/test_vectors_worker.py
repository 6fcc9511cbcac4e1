"""The embedding stage against the real PostgreSQL and the embedded store.

Work items are inserted directly; embedding goes through `Vectorizer.process` (the core
of the handler) and, in one test, through the stage handler on messages recorded by the
real run ledger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from etld.config import parse_config
from etld.jobs.runs import Runs
from etld.jobs.status import StepDef
from etld.store.queries import SQL
from etld.vectors.search import search
from etld.vectors.store import EdgeStore, point_id
from etld.vectors.texts import text_hash
from etld.vectors.worker import EmbeddingStage, Vectorizer
from etld.workers.errors import Reject
from etld.workers.stages import EMBED_BATCH, StageServices
from tests.support.vectors import (
    TARGETS,
    add_integration,
    add_tenant,
    add_work_items,
    corpus,
    load_embedder,
)

ITEMS = 300


@dataclass
class Tenant:
    id: int
    integration_id: int
    items: list[dict[str, Any]]
    record_ids: dict[str, int]


@pytest.fixture
async def vectorizer(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Vectorizer]:
    store = EdgeStore(tmp_path / "qdrant")
    await store.open()
    yield Vectorizer(pool, store, load_embedder("fp32"))
    await store.close()


async def _tenant(pool: asyncpg.Pool, name: str, count: int, prefix: str) -> Tenant:
    tenant_id = await add_tenant(pool, name)
    integration_id = await add_integration(pool, tenant_id, f"{name}-jira")
    items = corpus(count, prefix)
    ids = await add_work_items(pool, tenant_id, integration_id, items)
    return Tenant(tenant_id, integration_id, items, ids)


async def _embed_all(v: Vectorizer, t: Tenant, operation: str = "update") -> tuple[int, int, int]:
    embedded = skipped = deleted = 0
    keys = [i["external_id"] for i in t.items]
    for start in range(0, len(keys), EMBED_BATCH):
        out = await v.process(
            t.id, t.integration_id, "work_items", keys[start : start + EMBED_BATCH], operation
        )
        embedded, skipped, deleted = (
            embedded + out.embedded,
            skipped + out.skipped,
            deleted + out.deleted,
        )
    return embedded, skipped, deleted


async def _bridge(pool: asyncpg.Pool, tenant_id: int) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(
            "SELECT * FROM qdrant_vectors WHERE tenant_id = $1 ORDER BY record_id", tenant_id
        )
        return rows


async def test_each_item_embedded_once_then_nothing_then_only_the_change(
    pool: asyncpg.Pool, vectorizer: Vectorizer
) -> None:
    t = await _tenant(pool, "acme", ITEMS, "ACME")
    assert await _embed_all(vectorizer, t, "insert") == (ITEMS, 0, 0)
    collection = vectorizer.collection(t.id)
    assert collection == f"etld_t{t.id}_all_minilm_l6_v2_fp32"
    assert await vectorizer.store.count(collection, tenant_id=t.id) == ITEMS
    rows = await _bridge(pool, t.id)
    assert len(rows) == ITEMS
    assert {r["record_id"] for r in rows} == set(t.record_ids.values())
    first = rows[0]
    assert first["table_name"] == "work_items"
    assert first["source_type"] == "JIRA"
    assert first["collection_name"] == collection
    assert str(first["point_id"]) == point_id(t.id, "work_items", first["record_id"])
    assert (first["model"], first["variant"]) == ("all-MiniLM-L6-v2", "fp32")
    assert len(first["text_hash"]) == 64

    # A re-sync with nothing changed embeds nothing.
    assert await _embed_all(vectorizer, t) == (0, ITEMS, 0)

    # One changed item is embedded again, once, under the same point.
    changed = t.items[10]["external_id"]
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE work_items SET summary = summary || ' (again)' WHERE external_id = $1",
            changed,
        )
    assert await _embed_all(vectorizer, t) == (1, ITEMS - 1, 0)
    after = {r["external_id"]: r for r in await _bridge(pool, t.id)}
    before = {r["external_id"]: r for r in rows}
    assert after[changed]["text_hash"] != before[changed]["text_hash"]
    assert after[changed]["point_id"] == before[changed]["point_id"]
    assert after[changed]["updated_at"] > before[changed]["updated_at"]
    assert await vectorizer.store.count(collection, tenant_id=t.id) == ITEMS


async def test_paraphrased_titles_are_found_in_the_top_three(
    pool: asyncpg.Pool, vectorizer: Vectorizer
) -> None:
    t = await _tenant(pool, "acme", ITEMS, "ACME")
    await _embed_all(vectorizer, t, "insert")
    for n, (_, _, query) in enumerate(TARGETS, start=1):
        hits = await search(pool, vectorizer.store, vectorizer.embedder, t.id, query, limit=3)
        assert f"ACME-{n}" in [h.key for h in hits], (query, [(h.key, h.title) for h in hits])
    top = (await search(pool, vectorizer.store, vectorizer.embedder, t.id, TARGETS[0][2]))[0]
    assert top.source_type == "JIRA"
    assert top.type == "Bug"
    assert top.title == TARGETS[0][0]
    assert top.url == "https://jira.example.test/browse/ACME-1"
    assert 0.3 < top.score <= 1.0
    assert (
        await search(pool, vectorizer.store, vectorizer.embedder, t.id, TARGETS[0][2], "GITHUB")
        == []
    )


async def test_deleted_items_leave_the_store_and_the_search(
    pool: asyncpg.Pool, vectorizer: Vectorizer
) -> None:
    t = await _tenant(pool, "acme", 40, "ACME")
    await _embed_all(vectorizer, t, "insert")
    collection = vectorizer.collection(t.id)
    query = TARGETS[1][2]
    hits = await search(pool, vectorizer.store, vectorizer.embedder, t.id, query, limit=1)
    assert hits[0].key == "ACME-2"

    # The Jira id scan soft-deletes and sends a delete request.
    gone = t.items[1]["external_id"]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE work_items SET deleted_at = now() WHERE external_id = $1", gone)
    out = await vectorizer.process(t.id, t.integration_id, "work_items", [gone], "delete")
    assert (out.embedded, out.deleted) == (0, 1)
    assert await vectorizer.store.count(collection, tenant_id=t.id) == 39
    assert gone not in {r["external_id"] for r in await _bridge(pool, t.id)}
    hits = await search(pool, vectorizer.store, vectorizer.embedder, t.id, query, limit=5)
    assert "ACME-2" not in [h.key for h in hits]

    # deleted_at alone is enough, whatever the operation says; so is a vanished row.
    other, vanished = t.items[2]["external_id"], t.items[3]["external_id"]
    async with pool.acquire() as conn:
        await conn.execute("UPDATE work_items SET deleted_at = now() WHERE external_id = $1", other)
        await conn.execute("DELETE FROM work_items WHERE external_id = $1", vanished)
    out = await vectorizer.process(t.id, t.integration_id, "work_items", [other, vanished])
    assert out.deleted == 2
    assert await vectorizer.store.count(collection, tenant_id=t.id) == 37
    assert len(await _bridge(pool, t.id)) == 37
    # Deleting again is harmless.
    out = await vectorizer.process(t.id, t.integration_id, "work_items", [gone], "delete")
    assert out.deleted == 0


async def test_tenant_b_never_sees_tenant_a(pool: asyncpg.Pool, vectorizer: Vectorizer) -> None:
    a = await _tenant(pool, "acme", 60, "ACME")
    b = await _tenant(pool, "bravo", 30, "BRAVO")
    b.items = b.items[len(TARGETS) :]  # bravo embeds none of the target items
    await _embed_all(vectorizer, a, "insert")
    await _embed_all(vectorizer, b, "insert")
    for _, _, query in TARGETS:
        hits = await search(pool, vectorizer.store, vectorizer.embedder, b.id, query, limit=10)
        assert hits
        assert all(h.key and h.key.startswith("BRAVO-") for h in hits)
    assert await vectorizer.store.count(vectorizer.collection(b.id), tenant_id=a.id) == 0
    # An id only tenant A has, named under tenant B's integration, finds nothing to embed.
    out = await vectorizer.process(
        b.id, b.integration_id, "work_items", [a.items[50]["external_id"]]
    )
    assert (out.embedded, out.skipped, out.deleted) == (0, 0, 0)


async def test_texts_carry_type_status_labels_and_mapped_fields(
    pool: asyncpg.Pool, vectorizer: Vectorizer
) -> None:
    t = await _tenant(pool, "acme", 8, "ACME")
    async with pool.acquire() as conn:
        field_id = await conn.fetchval(
            "INSERT INTO custom_fields (tenant_id, integration_id, external_id, name, field_type)"
            " VALUES ($1, $2, 'customfield_10050', 'Customer impact', 'string') RETURNING id",
            t.id,
            t.integration_id,
        )
        await conn.execute(
            "INSERT INTO custom_fields_mapping (tenant_id, integration_id, custom_field_03_id)"
            " VALUES ($1, $2, $3)",
            t.id,
            t.integration_id,
            field_id,
        )
        await conn.execute(
            "UPDATE work_items SET custom_field_03 = 'Severe', labels = '{payments,web}' "
            "WHERE key = 'ACME-1'"
        )
    await _embed_all(vectorizer, t, "insert")
    expected = "\n".join(
        [
            TARGETS[0][0],
            "Bug · To Do",
            "Labels: payments, web",
            "Customer impact: Severe",
            TARGETS[0][1],
        ]
    )
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT text_hash FROM qdrant_vectors WHERE external_id = $1", t.items[0]["external_id"]
        )
    assert stored == text_hash(expected)


async def test_bad_requests_are_rejected(vectorizer: Vectorizer) -> None:
    with pytest.raises(Reject):
        await vectorizer.process(1, 1, "users", ["1"])
    with pytest.raises(Reject):
        await vectorizer.process(1, 1, "work_items", ["1"], "explode")


class _Publisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish(
        self, queue: str, message: dict[str, Any], *, headers: dict[str, Any] | None = None
    ) -> None:
        self.published.append((queue, message))


@dataclass
class _Delivery:
    raw: dict[str, Any]


async def test_stage_handler_completes_ledger_items_once(
    pool: asyncpg.Pool, db_url: str, vectorizer: Vectorizer
) -> None:
    t = await _tenant(pool, "acme", 50, "ACME")
    config = parse_config({"database": {"url": db_url}, "embeddings": {"enabled": True}})
    publisher = _Publisher()
    runs = Runs(pool, publisher, config)
    steps = [StepDef("issues", "Issues")]
    async with pool.acquire() as conn, conn.transaction():
        job_id = await conn.fetchval(
            SQL["seed.ensure_job"], t.id, t.integration_id, "jira-sync", "jira_sync", 1
        )
        run_id = await runs.claim(
            conn, tenant_id=t.id, job_id=job_id, steps=steps, trigger="manual"
        )
    assert run_id is not None
    await runs.start(run_id)
    ctx = await runs.context(run_id)
    assert ctx is not None
    root = publisher.published[-1][1]["work_id"]
    ids = [i["external_id"] for i in t.items]
    children = [
        (f"e:{n}", "issues", "embedding", {
            "table_name": "work_items",
            "external_id": ids[n],
            "external_ids": ids[n : n + EMBED_BATCH],
            "operation": "insert",
        })
        for n in range(0, len(ids), EMBED_BATCH)
    ]  # fmt: skip
    await runs.emit(ctx, root, children)
    messages = [m for q, m in publisher.published if q == "embedding_queue_free"]
    assert len(messages) == 4
    services = StageServices(pool, runs, config, embeddings_enabled=True)
    stage = EmbeddingStage(services, lambda: vectorizer)
    for message in messages:
        await stage.handle(_Delivery(message), None)
    for message in messages:  # redeliveries: already settled, nothing done twice
        await stage.handle(_Delivery(message), None)
    async with pool.acquire() as conn:
        states = await conn.fetch(
            "SELECT state FROM etl_run_items WHERE run_id = $1 AND stage = 'embedding'", run_id
        )
        counters = await conn.fetchrow(
            "SELECT done, records FROM etl_run_stages WHERE run_id = $1 AND stage = 'embedding'",
            run_id,
        )
    assert [s["state"] for s in states] == ["done"] * 4
    assert (counters["done"], counters["records"]) == (4, 50)
    assert len(await _bridge(pool, t.id)) == 50
    with pytest.raises(Reject):
        await stage.handle(_Delivery({"table_name": "work_items"}), None)


async def test_pull_requests_are_embedded_and_found_by_source_type(
    pool: asyncpg.Pool, vectorizer: Vectorizer
) -> None:
    t = await _tenant(pool, "acme", 30, "ACME")
    github = await add_integration(pool, t.id, "acme-github", provider="github")
    prs = [
        ("Fix flaky retry in the webhook sender", "Retries now back off.", "fix/webhook-retry"),
        ("Speed up the invoice PDF renderer", "Caches fonts between pages.", "perf/invoice-pdf"),
        ("Add dark theme tokens to the design system", "", "feature/dark-theme-tokens"),
    ]
    async with pool.acquire() as conn:
        repo = await conn.fetchval(
            "INSERT INTO repositories (tenant_id, integration_id, external_id, full_name) "
            "VALUES ($1, $2, '1', 'acme/shop') RETURNING id",
            t.id,
            github,
        )
        for n, (title, body, branch) in enumerate(prs, start=1):
            await conn.execute(
                "INSERT INTO pull_requests (tenant_id, integration_id, repository_id, "
                "external_id, number, title, body, head_ref, html_url) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                t.id,
                github,
                repo,
                f"pr{n}",
                n,
                title,
                body,
                branch,
                f"https://github.example.test/acme/shop/pull/{n}",
            )
    await _embed_all(vectorizer, t, "insert")
    out = await vectorizer.process(t.id, github, "pull_requests", ["pr1", "pr2", "pr3"], "insert")
    assert out.embedded == 3
    embedder, store = vectorizer.embedder, vectorizer.store
    hits = await search(pool, store, embedder, t.id, "invoice documents render slowly", "GITHUB")
    assert hits[0].key == "acme/shop#2"
    assert (hits[0].source_type, hits[0].type, hits[0].table) == (
        "GITHUB",
        "Pull request",
        "pull_requests",
    )
    assert hits[0].url == "https://github.example.test/acme/shop/pull/2"
    assert {h.source_type for h in hits} == {"GITHUB"}
    jira = await search(pool, store, embedder, t.id, "invoice documents render slowly", "JIRA")
    assert jira
    assert all(h.table == "work_items" for h in jira)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT source_type, text_hash FROM qdrant_vectors WHERE external_id = 'pr3'"
        )
    assert row["source_type"] == "GITHUB"
    expected = "Add dark theme tokens to the design system\nBranch: feature dark theme tokens"
    assert row["text_hash"] == text_hash(expected)


async def test_switching_variant_moves_points_and_never_mixes_collections(
    pool: asyncpg.Pool, vectorizer: Vectorizer
) -> None:
    t = await _tenant(pool, "acme", 20, "ACME")
    await _embed_all(vectorizer, t, "insert")
    int8 = Vectorizer(pool, vectorizer.store, load_embedder("int8"))
    fp32_collection, int8_collection = vectorizer.collection(t.id), int8.collection(t.id)
    assert int8_collection == f"etld_t{t.id}_all_minilm_l6_v2_int8" != fp32_collection
    assert await _embed_all(int8, t) == (20, 0, 0)  # same texts, another variant
    assert await vectorizer.store.count(fp32_collection, tenant_id=t.id) == 0
    assert await vectorizer.store.count(int8_collection, tenant_id=t.id) == 20
    rows = await _bridge(pool, t.id)
    assert {(r["variant"], r["collection_name"]) for r in rows} == {("int8", int8_collection)}
    assert await _embed_all(int8, t) == (0, 20, 0)
    hits = await search(pool, int8.store, int8.embedder, t.id, TARGETS[4][2], limit=3)
    assert "ACME-5" in [h.key for h in hits]
