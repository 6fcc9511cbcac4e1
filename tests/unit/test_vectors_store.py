"""The vector store contract, for the embedded engine and the server path (client local mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient

from etld.config import QdrantConfig
from etld.errors import StartupError
from etld.vectors.store import (
    EdgeStore,
    QdrantServerStore,
    StoreBusy,
    VectorPoint,
    VectorStore,
    collection_name,
    open_store,
    point_id,
)

DIM = 8
pytestmark = pytest.mark.filterwarnings(
    # qdrant-client's local mode (standing in for a server) says indexes do nothing there.
    "ignore:Payload indexes have no effect:UserWarning"
)


def _vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return [float(x) for x in v / np.linalg.norm(v)]


def _point(tenant: int, record: int, source: str = "JIRA", seed: int | None = None) -> VectorPoint:
    payload = {
        "tenant_id": tenant,
        "source_type": source,
        "table": "work_items",
        "record_id": record,
    }
    return VectorPoint(point_id(tenant, "work_items", record), _vector(seed or record), payload)


@pytest.fixture(params=["embedded", "qdrant"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s: VectorStore
    if request.param == "embedded":
        s = EdgeStore(tmp_path / "qdrant", prefix="t")
    else:
        s = QdrantServerStore(AsyncQdrantClient(location=":memory:"), prefix="t")
    await s.open()
    yield s
    await s.close()


async def test_upsert_search_and_tenant_filter(store: VectorStore) -> None:
    name = store.collection(1, "m_fp32")
    assert name == collection_name("t", 1, "m_fp32") == "t_t1_m_fp32"
    await store.ensure_collection(name, DIM)
    await store.upsert(name, [_point(1, r, "JIRA" if r % 2 else "GITHUB") for r in range(1, 21)])
    # A stray point of another tenant in the same collection is never returned.
    await store.upsert(name, [_point(2, 99, seed=5)])
    hits = await store.search(name, _vector(5), tenant_id=1, limit=3)
    assert hits[0].id == point_id(1, "work_items", 5)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert all(h.payload["tenant_id"] == 1 for h in hits)
    assert not await store.search(name, _vector(5), tenant_id=3, limit=3)
    github = await store.search(name, _vector(5), tenant_id=1, source_type="GITHUB", limit=20)
    assert {h.payload["source_type"] for h in github} == {"GITHUB"}
    assert len(github) == 10
    assert await store.count(name, tenant_id=1) == 20


async def test_same_point_id_overwrites_and_delete_removes(store: VectorStore) -> None:
    name = store.collection(1, "m_fp32")
    await store.ensure_collection(name, DIM)
    await store.upsert(name, [_point(1, 1, seed=1), _point(1, 2, seed=2)])
    await store.upsert(name, [_point(1, 1, seed=7)])  # record 1 embedded again
    assert await store.count(name, tenant_id=1) == 2
    hits = await store.search(name, _vector(7), tenant_id=1, limit=1)
    assert hits[0].id == point_id(1, "work_items", 1)
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    await store.delete(name, [point_id(1, "work_items", 1)])
    assert await store.count(name, tenant_id=1) == 1
    hits = await store.search(name, _vector(7), tenant_id=1, limit=5)
    assert [h.id for h in hits] == [point_id(1, "work_items", 2)]


async def test_absent_collection_is_empty(store: VectorStore) -> None:
    assert await store.search("t_t9_none", _vector(1), tenant_id=9) == []
    assert await store.count("t_t9_none", tenant_id=9) == 0
    await store.delete("t_t9_none", [point_id(9, "work_items", 1)])  # no error


async def test_embedded_store_survives_a_restart(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path)
    await first.open()
    await first.upsert("c", [_point(1, 1), _point(1, 2)])
    await first.close()
    second = EdgeStore(tmp_path)
    await second.open()
    assert await second.count("c", tenant_id=1) == 2
    await second.close()


async def test_embedded_store_belongs_to_one_process(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path)
    await first.open()
    with pytest.raises(StoreBusy):
        await EdgeStore(tmp_path).open()
    await first.close()
    again = EdgeStore(tmp_path)
    await again.open()
    await again.close()


def test_point_ids_are_deterministic_and_distinct() -> None:
    assert point_id(1, "work_items", 5) == point_id(1, "work_items", 5)
    assert point_id(1, "work_items", 5) != point_id(2, "work_items", 5)
    assert point_id(1, "work_items", 5) != point_id(1, "pull_requests", 5)


async def test_open_store_picks_by_config(tmp_path: Path) -> None:
    assert isinstance(open_store(QdrantConfig(path=str(tmp_path))), EdgeStore)
    server = open_store(QdrantConfig(url="http://127.0.0.1:1", collection_prefix="x"))
    assert isinstance(server, QdrantServerStore)
    assert server.prefix == "x"
    with pytest.raises(StartupError, match="Qdrant server"):
        await server.open()  # nothing listens there
    await server.close()
