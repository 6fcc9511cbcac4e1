"""API calls a full sync costs: at most 15 per 1,000 issues, cut changelogs included."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import pytest

from etld.jobs.runs import RunContext
from etld.sources.base import get_source
from tests.integration.test_jira_support import (
    MakeJira,
    PageStore,
    jira_factory,
    quiet_logs,  # noqa: F401
)

ISSUES = 2500
STEPS = (
    "jira_projects_and_issue_types",
    "jira_statuses_and_relationships",
    "jira_issues_with_changelogs",
)


@pytest.fixture
def make_jira(pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> MakeJira:
    return jira_factory(pool, aiohttp_server, monkeypatch)


class CountingStore(PageStore):
    """Counts pages and issues without storing the issue pages (only calls are measured)."""

    def __init__(self, pool: asyncpg.Pool, run: RunContext) -> None:
        super().__init__(pool, run)
        self.issues: set[str] = set()

    async def store_page(
        self,
        type_: str,
        payload: Any,
        page_key: str,
        *,
        item_count: int | None = None,
        verbatim: Mapping[str, bytes] | None = None,
        checkpoint: tuple[str, Mapping[str, Any]] | None = None,
    ) -> int:
        if type_ != "jira_issues":
            return await super().store_page(
                type_,
                payload,
                page_key,
                item_count=item_count,
                verbatim=verbatim,
                checkpoint=checkpoint,
            )
        self.issues.update(str(i["id"]) for i in payload["search"]["issues"])
        self.keys.append((type_, page_key))
        return 0


async def test_a_full_sync_costs_at_most_15_calls_per_1000_issues(make_jira: MakeJira) -> None:
    jira = await make_jira(ISSUES)
    heavy = sum(1 for t in jira.site.issues() if t.history_count > 100)
    assert heavy >= 25  # plenty of changelogs cut at the embedded cap
    run = await jira.new_run(full_sync=True)
    source = get_source("jira")
    reported = 0
    for name in STEPS:
        store = CountingStore(jira.pool, run)
        await jira.extract(run, source.step(name), store)
        reported += store.api_calls
        if name != "jira_issues_with_changelogs":  # later steps read what these loaded
            await jira.transform(run, source.step(name), store.raw_ids)
    assert store.issues == {t.id for t in jira.site.issues()}
    calls = jira.counter.total
    assert reported == calls
    per_thousand = calls * 1000 / ISSUES
    print(f"full sync of {ISSUES} issues: {calls} API calls, {per_thousand:.1f} per 1,000 issues")
    assert per_thousand <= 15
    assert jira.counter.count("/rest/api/3/changelog/bulkfetch") == 1
    assert jira.counter.count("/rest/api/3/issue/") == 0  # no per-issue calls at all
