"""The daemon's vectors part: loads the model and opens the store once, for workers and web.

It starts before the consumer pool, so a missing or altered model stops the daemon at
start rather than dead-lettering every embedding message later. A web-only daemon can
live without the store (another process may hold the embedded one): search then answers
503 with the reason, instead of the daemon refusing to start.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from etld.component import Component
from etld.config import Config
from etld.errors import StartupError
from etld.logs import get_logger
from etld.vectors.embedder import Embedder
from etld.vectors.model import ModelUnavailable
from etld.vectors.store import StoreBusy, VectorStore, open_store
from etld.vectors.worker import EmbeddingStage, Vectorizer
from etld.workers.stages import StageServices

log = get_logger(__name__)


class VectorsUnavailable(Exception):
    """Semantic search or embedding was asked for while the vectors part is not usable."""


class VectorServices(Component):
    name = "vectors"

    def __init__(self, config: Config, pool: asyncpg.Pool, *, store_required: bool) -> None:
        self.config = config
        self.pool = pool
        self.store_required = store_required
        self.embedder: Embedder | None = None
        self.store: VectorStore | None = None
        self.problem: str | None = "starting"

    async def start(self) -> None:
        try:
            # Hashing the weights (and converting them the first time) blocks for a while.
            self.embedder = await asyncio.to_thread(Embedder.from_config, self.config.embeddings)
        except ModelUnavailable as exc:
            raise StartupError(str(exc)) from exc
        store = open_store(self.config.qdrant)
        try:
            await store.open()
        except StoreBusy as exc:
            if self.store_required:
                raise StartupError(str(exc)) from exc
            log.warning("semantic search unavailable", reason=str(exc))
            self.problem = str(exc)
            return
        self.store = store
        self.problem = None
        log.info(
            "vectors ready",
            model=self.embedder.model_id,
            variant=self.embedder.variant,
            store=store.kind,
        )

    def parts(self) -> tuple[Embedder, VectorStore]:
        if self.embedder is None or self.store is None:
            raise VectorsUnavailable(self.problem or "semantic search is not available")
        return self.embedder, self.store

    def vectorizer(self) -> Vectorizer:
        embedder, store = self.parts()
        return Vectorizer(self.pool, store, embedder)

    def embedding_handler(self, services: StageServices) -> Any:
        """The `embedding` stage handler; it reaches the model once this part has started."""
        return EmbeddingStage(services, self.vectorizer).handle

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None
        if self.embedder is not None:
            self.embedder.close()
            self.embedder = None
