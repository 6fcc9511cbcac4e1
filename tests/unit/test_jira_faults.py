"""Fault injection on the simulated Jira: rate limits, 5xx, 401, latency, broken bodies."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from etld.simulator import (
    ApiCallCounter,
    FaultKind,
    FaultPlan,
    JiraSite,
    create_jira_app,
    generate_site,
)

AUTH = {"Authorization": "Basic " + base64.b64encode(b"etl:secret").decode()}
STATUS = "/rest/api/3/status"
SEARCH = "/rest/api/3/search/jql?jql=project%3DPROJ&fields=summary"


@pytest.fixture(scope="module")
def site() -> JiraSite:
    return generate_site(30, 1, now=datetime(2025, 3, 1, tzinfo=UTC))


async def test_scheduled_429_carries_retry_after(aiohttp_client: Any, site: JiraSite) -> None:
    plan = FaultPlan().schedule(
        FaultKind.RATE_LIMIT, count=2, path_prefix="/rest/api/3/search", retry_after=7
    )
    client = await aiohttp_client(create_jira_app(site, faults=plan))
    assert (await client.get(STATUS, headers=AUTH)).status == 200  # other paths unaffected
    for _ in range(2):
        response = await client.get(SEARCH, headers=AUTH)
        assert response.status == 429
        assert response.headers["Retry-After"] == "7"
        assert response.headers["X-RateLimit-Remaining"] == "0"
        assert response.headers["RateLimit-Reason"]
        reset = datetime.strptime(response.headers["X-RateLimit-Reset"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert reset.replace(tzinfo=UTC) > datetime.now(UTC)
        assert (await response.json())["errorMessages"]
    assert (await client.get(SEARCH, headers=AUTH)).status == 200
    assert plan.pending == 0
    assert plan.injected[FaultKind.RATE_LIMIT] == 2


async def test_server_error_burst_and_401(aiohttp_client: Any, site: JiraSite) -> None:
    plan = FaultPlan(retry_after=3)
    plan.schedule(FaultKind.SERVER_ERROR, status=503).schedule(FaultKind.SERVER_ERROR, status=502)
    plan.schedule(FaultKind.SERVER_ERROR, status=500).schedule(FaultKind.UNAUTHORIZED)
    client = await aiohttp_client(create_jira_app(site, faults=plan))
    first = await client.get(STATUS, headers=AUTH)
    assert first.status == 503
    assert first.headers["Retry-After"] == "3"
    second = await client.get(STATUS, headers=AUTH)
    assert second.status == 502
    assert "text/html" in second.headers["Content-Type"]
    assert (await client.get(STATUS, headers=AUTH)).status == 500
    assert (await client.get(STATUS, headers=AUTH)).status == 401
    assert (await client.get(STATUS, headers=AUTH)).status == 200


async def test_broken_bodies(aiohttp_client: Any, site: JiraSite) -> None:
    plan = FaultPlan().schedule(FaultKind.TRUNCATED).schedule(FaultKind.INVALID_JSON)
    client = await aiohttp_client(create_jira_app(site, faults=plan))
    for _ in range(2):
        response = await client.get(SEARCH, headers=AUTH)
        assert response.status == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(await response.read())
    orjson.loads(await (await client.get(SEARCH, headers=AUTH)).read())


async def test_latency_is_added(aiohttp_client: Any, site: JiraSite) -> None:
    plan = FaultPlan(latency_ms=20).schedule(FaultKind.LATENCY, latency_ms=150)
    client = await aiohttp_client(create_jira_app(site, faults=plan))
    started = time.perf_counter()
    await client.get(STATUS, headers=AUTH)
    slow = time.perf_counter() - started
    started = time.perf_counter()
    await client.get(STATUS, headers=AUTH)
    assert slow >= 0.17
    assert 0.02 <= time.perf_counter() - started < slow


def test_random_faults_replay_with_the_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan(
            seed=seed, probabilities={FaultKind.RATE_LIMIT: 0.2, FaultKind.SERVER_ERROR: 0.2}
        )
        return [f.kind if (f := plan.pick("/x")) else None for _ in range(200)]

    first = draws(4)
    assert first == draws(4)
    assert first != draws(5)
    assert 20 < first.count(FaultKind.RATE_LIMIT) < 70
    assert 20 < first.count(FaultKind.SERVER_ERROR) < 70


async def test_enforced_rate_limit(aiohttp_client: Any, site: JiraSite) -> None:
    plan = FaultPlan(requests_per_second=3)
    client = await aiohttp_client(create_jira_app(site, faults=plan))
    statuses = [(await client.get(STATUS, headers=AUTH)).status for _ in range(8)]
    assert statuses[:3] == [200] * 3
    assert 429 in statuses[3:]


async def test_counter_counts_every_call_but_stats(aiohttp_client: Any, site: JiraSite) -> None:
    counter = ApiCallCounter()
    plan = FaultPlan().schedule(FaultKind.RATE_LIMIT)
    client = await aiohttp_client(create_jira_app(site, faults=plan, counter=counter))
    await client.get(STATUS, headers=AUTH)
    await client.get(STATUS, headers=AUTH)
    await client.post("/rest/api/3/search/jql", headers=AUTH, json={"jql": "project = PROJ"})
    await client.get("/_sim/stats")
    assert counter.total == 3
    assert counter.count(STATUS) == 2
    assert counter.count("/rest/api/3/") == 3
    assert counter.count_method("post") == 1
    assert counter.per_path()[STATUS] == 2
    stats = await (await client.get("/_sim/stats")).json()
    assert stats["total"] == 3
    assert stats["faults"] == {"rate_limit": 1}
    counter.reset()
    assert counter.total == 0
    assert counter.snapshot()["paths"] == {}
