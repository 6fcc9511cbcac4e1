"""Recently stored raw pages, parsed, for the transform of the same page in this process.

Storing a page and transforming it are separate messages, usually handled by the same
daemon moments apart. Reading the page back costs PostgreSQL a detoast and a jsonb → text
conversion, and etld a JSON parse, of a few MB per page; the extraction still holds the
parsed payload, so it keeps it here for a while instead.

Only pages whose row this process inserted are kept, so an entry is exactly what the row
holds. A transform takes its page out (a page is transformed once; a retry or another
daemon reads PostgreSQL, as does everything after an eviction). The cache is bounded by the
pages' serialised size, least recently stored first out. Payloads are shared, not copied:
neither the extraction nor a transform may change a payload after storing or reading it.

Transforms take pages in about the order they were stored, so the page pushed out when the
cache is full is the one due next: an extraction that outruns its transforms makes every
further page a read back. While transforms in this process are taking pages, a producer
therefore waits for room before storing another (`wait_for_room`), for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# Serialised bytes; parsed pages take several times that. Since producers wait for room,
# this only has to cover the pages between their store and their transform: 16 MiB ran as
# fast as 32 MiB with 50 MiB less peak RSS, 8 MiB began to miss.
DEFAULT_BUDGET = 16 * 1024 * 1024
# A producer waits for room only while transforms here took a page this recently (a daemon
# whose transforms run elsewhere never waits), and for at most ROOM_WAIT per page.
TAKING_WINDOW = 2.0
ROOM_WAIT = 5.0


@dataclass(frozen=True)
class CachedPage:
    tenant_id: int
    type: str
    payload: Any
    size: int


class PageCache:
    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._pages: OrderedDict[int, CachedPage] = OrderedDict()
        self._last_take = float("-inf")  # time.monotonic() of the last page taken
        self._room = asyncio.Event()  # set whenever a page leaves

    async def wait_for_room(self, size: int, timeout: float = ROOM_WAIT) -> float:
        """Wait until a page of `size` fits without pushing another out, while transforms in
        this process are taking pages; at most `timeout`. Returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        while self.size + size > self.budget and size <= self.budget:
            now = time.monotonic()
            if now - self._last_take > TAKING_WINDOW or now >= deadline:
                break
            self._room.clear()
            # Woken when a page leaves; on a timeout, check again whether transforms still take.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), min(deadline, now + TAKING_WINDOW) - now)
        return time.monotonic() - started

    def put(self, raw_id: int, page: CachedPage) -> None:
        if page.size > self.budget:
            return
        self._drop(raw_id)
        self._pages[raw_id] = page
        self.size += page.size
        while self.size > self.budget:
            oldest = next(iter(self._pages))
            self._drop(oldest)

    def take(self, raw_id: int, tenant_id: int) -> CachedPage | None:
        self._last_take = time.monotonic()
        page = self._pages.get(raw_id)
        if page is None or page.tenant_id != tenant_id:
            self.misses += 1
            return None
        self._drop(raw_id)
        self.hits += 1
        return page

    def _drop(self, raw_id: int) -> None:
        page = self._pages.pop(raw_id, None)
        if page is not None:
            self.size -= page.size
            self._room.set()

    def __len__(self) -> int:
        return len(self._pages)
