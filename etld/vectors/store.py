"""The vector store behind one small interface: a Qdrant server, or Qdrant's engine in process.

`qdrant.url` set: a Qdrant server through qdrant-client. Otherwise the embedded default,
`qdrant-edge-py` (Qdrant's own storage and search engine as a library) with one shard
per collection under `qdrant.path`. Measured at 100k points it answers a tenant-filtered
search in milliseconds where qdrant-client's local mode (a pure Python scan) needs over a
second; see bench/embeddings.py. An edge shard is opened by one process at a time (its
write-ahead log is locked), so daemons that split the web and workers roles over several
processes need a Qdrant server.

Collections are per tenant, model and variant (`{prefix}_t{tenant}_{model}_{variant}`),
and every point's payload carries `tenant_id` and `source_type`; every search filters on
the tenant as well, so a wrong collection name can never leak another tenant's rows.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from etld.config import QdrantConfig
from etld.errors import EtldError, StartupError

T = TypeVar("T")
POINT_NAMESPACE = uuid.UUID("5b0c7f0e-3f0a-4c59-9a57-0f3b1c2d4e5f")


class StoreBusy(EtldError):
    """The embedded store is held by another process (a running daemon)."""


@dataclass(frozen=True)
class VectorPoint:
    id: str
    vector: Sequence[float]
    payload: dict[str, Any]


@dataclass(frozen=True)
class VectorHit:
    id: str
    score: float
    payload: dict[str, Any]


def collection_name(prefix: str, tenant_id: int, tag: str) -> str:
    """`etld_t7_all_minilm_l6_v2_fp32`: one collection per tenant, model and variant."""
    return f"{prefix}_t{tenant_id}_{tag}"


def point_id(tenant_id: int, table: str, record_id: int) -> str:
    """Deterministic: embedding a record again overwrites its point, never duplicates it."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{tenant_id}/{table}/{record_id}"))


class VectorStore(ABC):
    kind: str

    def __init__(self, prefix: str = "etld") -> None:
        self.prefix = prefix

    def collection(self, tenant_id: int, tag: str) -> str:
        return collection_name(self.prefix, tenant_id, tag)

    @abstractmethod
    async def open(self) -> None:
        """Claim or reach the store; raise StoreBusy or StartupError when it cannot be used."""

    @abstractmethod
    async def ensure_collection(self, name: str, dimensions: int) -> None: ...

    @abstractmethod
    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None: ...

    @abstractmethod
    async def delete(self, collection: str, ids: Sequence[str]) -> None: ...

    @abstractmethod
    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        tenant_id: int,
        source_type: str | None = None,
        limit: int = 10,
    ) -> list[VectorHit]:
        """Nearest points of the tenant (and source type); [] when the collection is absent."""

    @abstractmethod
    async def count(self, collection: str, *, tenant_id: int) -> int: ...

    @abstractmethod
    async def close(self) -> None: ...


# -- embedded: qdrant-edge-py ------------------------------------------------------------


class EdgeStore(VectorStore):
    """Qdrant's engine in process: one edge shard per collection, run on one thread."""

    kind = "embedded"

    def __init__(self, path: str | Path, prefix: str = "etld") -> None:
        super().__init__(prefix)
        self.path = Path(path)
        self._shards: dict[str, Any] = {}
        self._lock: IO[bytes] | None = None
        # The shard calls block (disk, search): one thread keeps them off the event loop
        # and in order, so a search never interleaves with a half-applied upsert batch.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="etld-vectors")

    async def open(self) -> None:
        """Take the directory's lock, so a second process fails at start, not mid-batch."""
        self.path.mkdir(parents=True, exist_ok=True)
        handle = (self.path / ".etld.lock").open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreBusy(
                f"the embedded vector store {self.path} is open in another etld process "
                "(several processes need a Qdrant server: set qdrant.url)"
            ) from None
        self._lock = handle

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _shard(self, name: str, dimensions: int | None) -> Any:
        import qdrant_edge as qe

        shard = self._shards.get(name)
        if shard is not None:
            return shard
        directory = self.path / name
        try:
            if directory.is_dir() and any(directory.iterdir()):
                shard = qe.EdgeShard.load(str(directory))
            elif dimensions is None:
                return None
            else:
                directory.mkdir(parents=True, exist_ok=True)
                params = qe.EdgeVectorParams(size=dimensions, distance=qe.Distance.Cosine)
                shard = qe.EdgeShard.create(str(directory), qe.EdgeConfig(vectors=params))
                schema = qe.PayloadSchemaType
                shard.update(qe.UpdateOperation.create_field_index("tenant_id", schema.Integer))
                shard.update(qe.UpdateOperation.create_field_index("source_type", schema.Keyword))
        except Exception as exc:
            if "WouldBlock" in str(exc):
                raise StoreBusy(
                    f"the embedded vector store {directory} is open in another process"
                ) from exc
            raise
        self._shards[name] = shard
        return shard

    async def ensure_collection(self, name: str, dimensions: int) -> None:
        await self._call(self._shard, name, dimensions)

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        import qdrant_edge as qe

        def run() -> None:
            shard = self._shard(collection, len(points[0].vector))
            batch = [qe.Point(p.id, list(map(float, p.vector)), p.payload) for p in points]
            shard.update(qe.UpdateOperation.upsert_points(batch))

        if points:
            await self._call(run)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        import qdrant_edge as qe

        def run() -> None:
            shard = self._shard(collection, None)
            if shard is not None:
                shard.update(qe.UpdateOperation.delete_points(list(ids)))

        if ids:
            await self._call(run)

    @staticmethod
    def _filter(tenant_id: int, source_type: str | None) -> Any:
        import qdrant_edge as qe

        must: list[Any] = [qe.FieldCondition("tenant_id", match=qe.MatchValue(tenant_id))]
        if source_type is not None:
            must.append(qe.FieldCondition("source_type", match=qe.MatchValue(source_type)))
        return qe.Filter(must=must)

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        tenant_id: int,
        source_type: str | None = None,
        limit: int = 10,
    ) -> list[VectorHit]:
        import qdrant_edge as qe

        def run() -> list[VectorHit]:
            shard = self._shard(collection, None)
            if shard is None:
                return []
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(list(map(float, vector))),
                filter=self._filter(tenant_id, source_type),
                with_payload=True,
            )
            return [
                VectorHit(str(p.id), p.score, dict(p.payload or {})) for p in shard.query(request)
            ]

        return await self._call(run)

    async def count(self, collection: str, *, tenant_id: int) -> int:
        import qdrant_edge as qe

        def run() -> int:
            shard = self._shard(collection, None)
            if shard is None:
                return 0
            return int(
                shard.count(qe.CountRequest(exact=True, filter=self._filter(tenant_id, None)))
            )

        return await self._call(run)

    def optimize(self) -> None:
        """Build the HNSW index and vacuum deletions (blocking; minutes at 100k points)."""
        for shard in self._shards.values():
            shard.optimize()

    async def close(self) -> None:
        def run() -> None:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()

        await self._call(run)
        self._executor.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None


# -- a Qdrant server: qdrant-client --------------------------------------------------------


class QdrantServerStore(VectorStore):
    """A Qdrant server (or any AsyncQdrantClient, e.g. local mode in tests)."""

    kind = "qdrant"

    def __init__(self, client: Any, prefix: str = "etld") -> None:
        super().__init__(prefix)
        self.client = client
        self._known: set[str] = set()

    @classmethod
    def connect(
        cls, url: str, api_key: str | None = None, prefix: str = "etld"
    ) -> QdrantServerStore:
        from qdrant_client import AsyncQdrantClient

        # No version probe on a background thread: `open` checks that the server answers,
        # and a probe of an unreachable server raises where nobody can catch it.
        client = AsyncQdrantClient(url=url, api_key=api_key, check_compatibility=False)
        return cls(client, prefix)

    async def open(self) -> None:
        try:
            await self.client.get_collections()
        except Exception as exc:
            raise StartupError(f"cannot reach the Qdrant server: {exc}") from exc

    async def ensure_collection(self, name: str, dimensions: int) -> None:
        from qdrant_client import models

        if name in self._known:
            return
        if not await self.client.collection_exists(name):
            await self.client.create_collection(
                name,
                vectors_config=models.VectorParams(
                    size=dimensions, distance=models.Distance.COSINE
                ),
            )
            await self.client.create_payload_index(
                name, "tenant_id", field_schema=models.PayloadSchemaType.INTEGER
            )
            await self.client.create_payload_index(
                name, "source_type", field_schema=models.PayloadSchemaType.KEYWORD
            )
        self._known.add(name)

    async def upsert(self, collection: str, points: Sequence[VectorPoint]) -> None:
        from qdrant_client import models

        if not points:
            return
        await self.ensure_collection(collection, len(points[0].vector))
        structs = [
            models.PointStruct(id=p.id, vector=list(map(float, p.vector)), payload=p.payload)
            for p in points
        ]
        await self.client.upsert(collection, points=structs, wait=True)

    async def delete(self, collection: str, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if ids and await self._exists(collection):
            await self.client.delete(
                collection, points_selector=models.PointIdsList(points=list(ids)), wait=True
            )

    async def _exists(self, collection: str) -> bool:
        return collection in self._known or bool(await self.client.collection_exists(collection))

    @staticmethod
    def _filter(tenant_id: int, source_type: str | None) -> Any:
        from qdrant_client import models

        must: list[Any] = [
            models.FieldCondition(key="tenant_id", match=models.MatchValue(value=tenant_id))
        ]
        if source_type is not None:
            must.append(
                models.FieldCondition(key="source_type", match=models.MatchValue(value=source_type))
            )
        return models.Filter(must=must)

    async def search(
        self,
        collection: str,
        vector: Sequence[float],
        *,
        tenant_id: int,
        source_type: str | None = None,
        limit: int = 10,
    ) -> list[VectorHit]:
        if not await self._exists(collection):
            return []
        answer = await self.client.query_points(
            collection,
            query=list(map(float, vector)),
            query_filter=self._filter(tenant_id, source_type),
            limit=limit,
            with_payload=True,
        )
        return [VectorHit(str(p.id), float(p.score), dict(p.payload or {})) for p in answer.points]

    async def count(self, collection: str, *, tenant_id: int) -> int:
        if not await self._exists(collection):
            return 0
        answer = await self.client.count(
            collection, count_filter=self._filter(tenant_id, None), exact=True
        )
        return int(answer.count)

    async def close(self) -> None:
        await self.client.close()


def open_store(config: QdrantConfig, env: dict[str, str] | None = None) -> VectorStore:
    """The configured store: a server when `qdrant.url` is set, else the embedded one."""
    if config.url:
        source = os.environ if env is None else env
        api_key = source.get(config.api_key_env) if config.api_key_env else None
        return QdrantServerStore.connect(config.url, api_key, config.collection_prefix)
    return EdgeStore(config.path, config.collection_prefix)
