"""GitHub's rate limits during a sync: primary limits (403 and 429 with nothing remaining)
waited out in place when the reset is near, surfaced as a Retry with the reset's delay when it
is far; secondary limits (403/429) honouring retry-after, or at least a minute, doubling while
they repeat; several tokens used in turn. The simulator counts every call made while the
client had been told to wait: each run below finishes with none, and with the right data."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest

from etld.simulator.faults import FaultKind, FaultPlan
from etld.simulator.github_data import SiteOptions
from etld.simulator.github_web import RateLimits
from etld.sources.http import host_limiter
from etld.workers.errors import Retry
from tests.integration.test_github_support import (
    TOKEN,
    GitHub,
    MakeGitHub,
    github_factory,
    rows,
)
from tests.integration.test_jira_support import quiet_logs  # noqa: F401

SMALL = SiteOptions(big=False, commits=(1, 3), review_comments=(0, 2), issue_comments=(0, 2))


@pytest.fixture
def make_github(
    pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> MakeGitHub:
    return github_factory(pool, aiohttp_server, monkeypatch)


async def loaded(gh: GitHub) -> int:
    found = await rows(gh.pool, "SELECT count(*) AS n FROM pull_requests WHERE title IS NOT NULL")
    return int(found[0]["n"])


def time_passes(gh: GitHub) -> None:
    """What a delayed retry finds: the simulator's windows reset and the client's waits over."""
    gh.limits.reset()
    limiter = host_limiter(f"{gh.server.host}:{gh.server.port}", 4)
    limiter.blocked_until = 0.0
    limiter.resting.clear()


@pytest.mark.parametrize("status", [403, 429])
async def test_a_near_primary_reset_is_waited_out(make_github: MakeGitHub, status: int) -> None:
    limits = RateLimits(limit=20, window=1.0, status=status)
    gh = await make_github(8, options=SMALL, limits=limits)
    limits.exhaust(TOKEN)  # the first call is refused, the client learns only then
    started = time.monotonic()

    await gh.sync(await gh.new_run(full_sync=True))

    assert limits.refused["primary"] >= 1
    assert gh.statuses[status] >= 1
    assert gh.counter.total > 20  # more than one window holds: resets were waited for
    assert time.monotonic() - started >= 1.0
    assert limits.early == 0
    assert await loaded(gh) == 8


@pytest.mark.parametrize("status", [403, 429])
async def test_a_far_primary_reset_becomes_a_retry_with_its_delay(
    make_github: MakeGitHub, status: int
) -> None:
    limits = RateLimits(limit=10, window=3600, status=status)
    gh = await make_github(8, options=SMALL, limits=limits)
    limits.exhaust(TOKEN)
    retries: list[Retry] = []

    async def on_retry(exc: Retry) -> None:
        retries.append(exc)
        assert limits.early == 0  # nothing was sent while the token rested
        time_passes(gh)

    await gh.sync(await gh.new_run(full_sync=True), on_retry=on_retry)

    assert gh.statuses[status] >= 1
    assert len(retries) >= 2  # the refusal, then the token running out again
    assert all(not r.count and 3500 < (r.delay or 0) <= 3601 for r in retries)
    assert limits.early == 0
    assert await loaded(gh) == 8


@pytest.mark.parametrize("status", [403, 429])
async def test_a_secondary_limit_with_retry_after_is_honoured(
    make_github: MakeGitHub, status: int
) -> None:
    faults = FaultPlan().schedule(
        FaultKind.RATE_LIMIT, status=status, retry_after=1, path_prefix="/repos/acme/api/pulls/"
    )
    gh = await make_github(10, options=SMALL, faults=faults)
    started = time.monotonic()

    await gh.sync(await gh.new_run(full_sync=True))

    assert faults.injected[FaultKind.RATE_LIMIT] == 1
    assert time.monotonic() - started >= 1.0
    assert gh.limits.early == 0
    assert await loaded(gh) == 10


async def test_secondary_limits_without_a_header_wait_a_minute_then_longer(
    make_github: MakeGitHub,
) -> None:
    # retry_after=0: no retry-after header, the client must pick the wait itself.
    faults = FaultPlan().schedule(
        FaultKind.RATE_LIMIT, status=403, retry_after=0, count=2, path_prefix="/repos/acme/web/"
    )
    gh = await make_github(10, options=SMALL, faults=faults)
    delays: list[float] = []

    async def on_retry(exc: Retry) -> None:
        assert not exc.count
        delays.append(exc.delay or 0)
        time_passes(gh)

    await gh.sync(await gh.new_run(full_sync=True), on_retry=on_retry)

    assert delays == [60.0, 120.0]
    assert gh.limits.early == 0
    assert await loaded(gh) == 10


async def test_several_tokens_are_used_in_turn(make_github: MakeGitHub) -> None:
    limits = RateLimits(limit=15, window=3600)
    tokens = ["ghp_one", "ghp_two", "ghp_three"]
    gh = await make_github(
        8, options=SMALL, limits=limits, server_tokens=tokens, secret=", ".join(tokens)
    )
    limits.exhaust("ghp_two")  # refused once, then left to rest while the others work

    await gh.sync(await gh.new_run(full_sync=True))

    assert gh.counter.total > 15  # more than one token could make
    assert gh.statuses[403] <= 1
    assert limits.early == 0
    assert await loaded(gh) == 8
    used = [int(limits.headers(t)["x-ratelimit-used"]) for t in tokens]
    assert all(n > 0 for n in used)
