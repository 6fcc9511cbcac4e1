"""Atlassian's documented example answers, stored as pages and transformed: real shapes
(odd category keys, plain-text descriptions, epoch timestamps, items without status) load
without error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from etld.sources.base import RawPage, get_source
from tests.integration.test_jira_support import (
    Collector,
    MakeJira,
    jira_factory,
    quiet_logs,  # noqa: F401
)

SAMPLES = Path("/work/shared/reference/api-samples/jira")


@pytest.fixture
def make_jira(pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> MakeJira:
    return jira_factory(pool, aiohttp_server, monkeypatch)


def sample(name: str) -> Any:
    return orjson.loads((SAMPLES / f"{name}.json").read_bytes())


def pages() -> list[tuple[str, str, Any]]:
    """(step, page type, payload) for every sample that is a transform input, in step order."""
    issue = sample("issue_get")
    return [
        ("jira_projects_and_issue_types", "jira_projects", sample("project_search")),
        ("jira_statuses_and_relationships", "jira_statuses", sample("status")),
        (
            "jira_statuses_and_relationships",
            "jira_project_statuses",
            {"project": {"id": "10000", "key": "EX"}, "issue_types": sample("project_statuses")},
        ),
        ("jira_issues_with_changelogs", "jira_issues", {"search": sample("search_jql")}),
        ("jira_issues_with_changelogs", "jira_issues", {"search": {"issues": [issue]}}),
        (
            "jira_issues_with_changelogs",
            "jira_issues",
            {
                "search": {"issues": [issue]},
                "issue_changelogs": {"10002": [sample("issue_changelog")]},
            },
        ),
        (
            "jira_issues_with_changelogs",
            "jira_issues",
            {
                "search": {"issues": [{"id": "10100", "key": "ED-9", "fields": {}}]},
                "bulk_changelogs": [sample("changelog_bulkfetch")],
            },
        ),
        ("jira_custom_fields", "jira_fields", sample("field")),
        ("jira_custom_fields", "jira_createmeta_legacy", sample("issue_createmeta_DEPRECATED")),
        (
            "jira_custom_fields",
            "jira_createmeta",
            {
                "project": {"id": "10000", "key": "EX"},
                "issuetypes": [sample("issue_createmeta_project_issuetypes")],
                "fields": {"1": [sample("issue_createmeta_project_issuetype_fields")]},
            },
        ),
    ]


async def test_every_documented_example_transforms(make_jira: MakeJira) -> None:
    jira = await make_jira(0)
    run = await jira.new_run(full_sync=True)
    ctx = await jira.context(run)
    source = get_source("jira")
    for n, (step, type_, payload) in enumerate(pages(), start=1):
        await source.step(step).transform(ctx, RawPage(n, type_, payload), Collector())

    async with jira.pool.acquire() as conn:
        projects = await conn.fetch("SELECT key, name FROM projects ORDER BY key")
        statuses = await conn.fetch("SELECT external_id, name, category FROM statuses")
        items = {r["key"]: r for r in await conn.fetch("SELECT * FROM work_items")}
        relations = await conn.fetchval("SELECT count(*) FROM projects_statuses")
    assert [(p["key"], p["name"]) for p in projects] == [("ABC", "Alphabetical"), ("EX", "Example")]
    # Category keys outside Jira's four are read from the category name, else "undefined".
    assert {s["external_id"]: s["category"] for s in statuses} == {
        "10000": "indeterminate",
        "5": "undefined",
    }
    assert relations == 2
    assert set(items) == {"ED-1", "ED-9"}
    assert items["ED-1"]["description"] == "Main order flow broken"  # ADF and plain text alike
    assert items["ED-1"]["total_work_starts"] == 0  # its changelog changed labels, not status
