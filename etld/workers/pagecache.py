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
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

DEFAULT_BUDGET = 32 * 1024 * 1024  # serialised bytes; parsed pages take several times that


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

    def __len__(self) -> int:
        return len(self._pages)
