"""Semantic search: a question in, the tenant's closest work items and pull requests out.

The store answers with point ids and scores for the tenant's collection (filtered on the
tenant as well); the details come from PostgreSQL, again scoped to the tenant and without
deleted records, so a hit shows what the database holds now.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from etld.store.queries import SQL
from etld.vectors.embedder import Embedder
from etld.vectors.store import VectorStore

MAX_LIMIT = 100
_DETAILS = {"work_items": "vectors.hit_work_items", "pull_requests": "vectors.hit_pull_requests"}


@dataclass(frozen=True)
class SearchHit:
    score: float
    source_type: str  # JIRA, GITHUB or a custom source's name
    table: str
    type: str | None  # the item's kind: Bug, Story, Pull request ...
    record_id: int
    external_id: str
    key: str | None
    title: str | None
    url: str | None

    @property
    def label(self) -> str:
        return self.key or self.external_id

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "score": round(self.score, 4)}


async def search(
    pool: asyncpg.Pool,
    store: VectorStore,
    embedder: Embedder,
    tenant_id: int,
    text: str,
    source_type: str | None = None,
    limit: int = 10,
) -> list[SearchHit]:
    """The `limit` records of the tenant closest in meaning to `text`, best first."""
    text = text.strip()
    if not text:
        return []
    limit = max(1, min(limit, MAX_LIMIT))
    vector = await embedder.embed_one(text)
    hits = await store.search(
        store.collection(tenant_id, embedder.tag),
        vector,
        tenant_id=tenant_id,
        source_type=source_type,
        limit=limit,
    )
    wanted: dict[str, list[int]] = {}
    for hit in hits:
        if hit.payload.get("tenant_id") == tenant_id and hit.payload.get("table") in _DETAILS:
            wanted.setdefault(hit.payload["table"], []).append(int(hit.payload["record_id"]))
    details: dict[tuple[str, int], asyncpg.Record] = {}
    async with pool.acquire() as conn:
        for table, ids in wanted.items():
            for row in await conn.fetch(SQL[_DETAILS[table]], tenant_id, ids):
                details[(table, row["id"])] = row
    out: list[SearchHit] = []
    for hit in hits:
        row = details.get((hit.payload.get("table", ""), int(hit.payload.get("record_id", 0))))
        if row is None:  # deleted since, or not the tenant's: never shown
            continue
        out.append(
            SearchHit(
                score=hit.score,
                source_type=str(hit.payload.get("source_type", "")),
                table=hit.payload["table"],
                type=row["item_type"],
                record_id=row["id"],
                external_id=row["external_id"],
                key=row["key"],
                title=row["title"],
                url=row["url"],
            )
        )
    return out
