"""The in-process page cache: bounded, taken once, and holding a producer that outruns it."""

from __future__ import annotations

import asyncio
import time

import pytest

from etld.workers import pagecache
from etld.workers.pagecache import CachedPage, PageCache


def page(size: int, tenant: int = 1) -> CachedPage:
    return CachedPage(tenant, "issues", {"size": size}, size)


def test_budget_pushes_out_the_oldest_and_pages_are_taken_once() -> None:
    cache = PageCache(budget=100)
    for raw_id in (1, 2, 3):
        cache.put(raw_id, page(40))
    assert (cache.size, len(cache)) == (80, 2)
    assert cache.take(1, 1) is None  # pushed out by the third
    assert cache.take(2, 2) is None  # another tenant's page is never handed out
    assert cache.take(2, 1) is not None
    assert cache.take(2, 1) is None
    assert (cache.hits, cache.misses) == (1, 3)


async def test_producer_waits_while_transforms_take_pages() -> None:
    cache = PageCache(budget=100)
    cache.put(1, page(60))
    cache.put(2, page(40))
    cache.take(99, 1)  # a transform here is taking pages

    async def transform_later() -> None:
        await asyncio.sleep(0.05)
        cache.take(1, 1)

    taker = asyncio.create_task(transform_later())
    waited = await cache.wait_for_room(50, timeout=2)
    await taker
    assert 0.04 <= waited < 1
    cache.put(3, page(50))
    assert cache.take(2, 1) is not None  # nothing was pushed out to make room


async def test_producer_does_not_wait_without_local_transforms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = PageCache(budget=100)
    cache.put(1, page(100))
    # Never taken from: the transforms run in another daemon, which reads PostgreSQL.
    assert await cache.wait_for_room(50, timeout=2) < 0.01
    # Transforms here that stopped taking pages a while ago do not hold it either.
    monkeypatch.setattr(pagecache, "TAKING_WINDOW", 0.05)
    cache.take(99, 1)
    started = time.monotonic()
    await cache.wait_for_room(50, timeout=2)
    assert time.monotonic() - started < 0.5


async def test_waiting_is_bounded() -> None:
    cache = PageCache(budget=100)
    cache.put(1, page(100))
    cache.take(99, 1)
    waited = await cache.wait_for_room(50, timeout=0.1)
    assert 0.09 <= waited < 0.5
