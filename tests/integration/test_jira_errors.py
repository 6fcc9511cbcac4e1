"""How Jira steps fail: rate limits waited out or turned into delayed retries, refused
credentials and malformed answers dead-lettered with a clear reason, hostile URLs refused."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest

from etld.simulator import FaultKind, FaultPlan
from etld.sources.base import RawPage, get_source
from etld.workers.errors import Reject, Retry
from tests.integration.test_jira_support import (
    Collector,
    MakeJira,
    jira_factory,
    quiet_logs,  # noqa: F401
)

SEARCH = "/rest/api/3/search"
ISSUES_STEP = "jira_issues_with_changelogs"
FAST_RETRIES = {"http": {"backoff_base": 0.01, "backoff_cap": 0.05}}


@pytest.fixture
def make_jira(pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> MakeJira:
    return jira_factory(pool, aiohttp_server, monkeypatch)


def step(name: str) -> Any:
    return get_source("jira").step(name)


async def test_short_rate_limits_and_server_errors_are_waited_out(make_jira: MakeJira) -> None:
    faults = FaultPlan()
    faults.schedule(FaultKind.RATE_LIMIT, path_prefix=SEARCH, retry_after=1)
    faults.schedule(FaultKind.SERVER_ERROR, count=2, path_prefix=SEARCH, status=502)
    jira = await make_jira(150, faults=faults, settings=FAST_RETRIES)
    run = await jira.new_run(full_sync=True)
    started = time.monotonic()
    store = await jira.extract(run, step(ISSUES_STEP))
    assert time.monotonic() - started >= 0.9  # the Retry-After second was honoured
    assert faults.injected[FaultKind.RATE_LIMIT] == 1
    assert faults.injected[FaultKind.SERVER_ERROR] == 2
    pages = await jira.pages(store.raw_ids)
    loaded = {
        i["id"] for p in pages if p.type == "jira_issues" for i in p.payload["search"]["issues"]
    }
    assert len(loaded) == 150
    assert store.api_calls == jira.counter.total  # failed attempts are counted too


async def test_a_long_rate_limit_becomes_a_delayed_retry(make_jira: MakeJira) -> None:
    faults = FaultPlan().schedule(FaultKind.RATE_LIMIT, path_prefix=SEARCH, retry_after=45)
    jira = await make_jira(50, faults=faults)
    run = await jira.new_run(full_sync=True)
    started = time.monotonic()
    with pytest.raises(Retry) as caught:
        await jira.extract(run, step(ISSUES_STEP))
    assert time.monotonic() - started < 5  # no handler asleep for the wait
    assert caught.value.delay == 45
    assert caught.value.count is False  # the wait says nothing about the message


async def test_refused_credentials_are_a_reject_with_the_exact_message(make_jira: MakeJira) -> None:
    jira = await make_jira(10, user="etl@example.com", token="the-right-one")
    run = await jira.new_run(full_sync=True)
    with pytest.raises(Reject) as caught:
        await jira.extract(run, step("jira_projects_and_issue_types"))
    assert caught.value.reason == f"Jira rejected the credentials for {jira.base_url}"
    assert jira.counter.total == 1  # no retry storm


@pytest.mark.parametrize("kind", [FaultKind.INVALID_JSON, FaultKind.TRUNCATED])
async def test_a_malformed_answer_is_a_reject_naming_the_problem(
    make_jira: MakeJira, kind: FaultKind
) -> None:
    jira = await make_jira(30, faults=FaultPlan().schedule(kind, path_prefix=SEARCH))
    run = await jira.new_run(full_sync=True)
    with pytest.raises(Reject) as caught:
        await jira.extract(run, step(ISSUES_STEP))
    assert "returned a malformed response to POST" in caught.value.reason
    assert "/rest/api/3/search/jql" in caught.value.reason
    assert "invalid JSON" in caught.value.reason


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"search": {"issues": "none"}}, "'search.issues' is not a list of issues"),
        ([1, 2], "expected an object with a 'search' answer"),
        ({"search": {"issues": [{"key": "X-1"}]}}, "an issue has no id"),
        (
            {"search": {"issues": []}, "bulk_changelogs": [{"issueChangeLogs": 3}]},
            "'issueChangeLogs' is not a list of objects",
        ),
    ],
)
async def test_a_misshapen_stored_page_is_a_reject(
    make_jira: MakeJira, payload: Any, problem: str
) -> None:
    jira = await make_jira(0)
    run = await jira.new_run(full_sync=True)
    ctx = await jira.context(run)
    with pytest.raises(Reject, match=problem):
        await step(ISSUES_STEP).transform(ctx, RawPage(7, "jira_issues", payload), Collector())


async def test_an_unknown_page_type_is_a_reject(make_jira: MakeJira) -> None:
    jira = await make_jira(0)
    run = await jira.new_run(full_sync=True)
    ctx = await jira.context(run)
    with pytest.raises(Reject, match="cannot transform raw page 9 of type 'jira_mystery'"):
        await step(ISSUES_STEP).transform(ctx, RawPage(9, "jira_mystery", {}), Collector())


async def test_a_private_jira_needs_the_integration_to_allow_it(make_jira: MakeJira) -> None:
    jira = await make_jira(5, allow_private_network=False)
    run = await jira.new_run(full_sync=True)
    with pytest.raises(Reject) as caught:
        await jira.extract(run, step("jira_projects_and_issue_types"))
    assert caught.value.reason.startswith(f"refusing {jira.base_url}: scheme 'http' is not allowed")
    assert jira.counter.total == 0
