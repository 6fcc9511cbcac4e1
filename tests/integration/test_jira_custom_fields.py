"""The on-demand custom fields step and the tenant's custom field mapping on work items."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from etld.simulator.jira_render import DEV_FIELD_ID
from etld.sources.base import get_source
from tests.integration.test_jira_support import (
    MakeJira,
    jira_factory,
    quiet_logs,  # noqa: F401
)

CF_STEP = "jira_custom_fields"


@pytest.fixture
def make_jira(pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> MakeJira:
    return jira_factory(pool, aiohttp_server, monkeypatch)


def test_the_custom_fields_step_runs_only_when_asked() -> None:
    source = get_source("jira")
    regular = [s.name for s in source.steps({})]
    assert regular == [
        "jira_projects_and_issue_types",
        "jira_statuses_and_relationships",
        "jira_issues_with_changelogs",
        "jira_dev_status",
    ]
    assert [s.name for s in source.steps({"custom_fields_sync": True})] == [CF_STEP, *regular]
    assert [s.name for s in source.all_steps()] == [*regular, CF_STEP]
    assert source.step(CF_STEP).display_name == "Custom Fields"


async def test_custom_fields_are_discovered_once_each_and_mapped(make_jira: MakeJira) -> None:
    jira = await make_jira(120)
    site = jira.site
    run = await jira.new_run(full_sync=True, config={"custom_fields_sync": True})
    await jira.sync(run, [CF_STEP])

    async with jira.pool.acquire() as conn:
        fields = {
            r["external_id"]: r
            for r in await conn.fetch(
                "SELECT external_id, name, field_type, operations FROM custom_fields"
            )
        }
    expected = {cf.id: (cf.name, cf.schema["type"]) for cf in site.custom_fields}
    expected[DEV_FIELD_ID] = ("Development", "any")  # listed by /field, on no create screen
    assert {f: (r["name"], r["field_type"]) for f, r in fields.items()} == expected
    # known from the create screens
    assert all(r["operations"] for f, r in fields.items() if f != DEV_FIELD_ID)
    # Every project and issue type was asked, through the paginated endpoints.
    calls = jira.counter.per_path()
    assert not any(p == "/rest/api/3/issue/createmeta" for p in calls)
    assert sum(1 for p in calls if p.startswith("/rest/api/3/issue/createmeta/")) == len(
        site.projects
    ) + sum(len(p.issue_types) for p in site.projects)

    by_kind = {cf.kind: cf for cf in site.custom_fields}
    slots = {
        "story_points_field_id": by_kind["story_points"].id,
        "team_field_id": by_kind["team"].id,
        "custom_field_01_id": by_kind["select"].id,
        "custom_field_02_id": by_kind["multiselect"].id,
        "custom_field_03_id": by_kind["user"].id,
    }
    async with jira.pool.acquire() as conn:
        ids = {
            r["external_id"]: r["id"]
            for r in await conn.fetch("SELECT id, external_id FROM custom_fields")
        }
        await conn.execute(
            "INSERT INTO custom_fields_mapping (tenant_id, integration_id, story_points_field_id, "
            "team_field_id, custom_field_01_id, custom_field_02_id, custom_field_03_id) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            jira.tenant_id,
            jira.integration_id,
            *(ids[f] for f in slots.values()),
        )
    await jira.sync(run, ["jira_projects_and_issue_types", "jira_issues_with_changelogs"])

    async with jira.pool.acquire() as conn:
        items = {r["external_id"]: r for r in await conn.fetch("SELECT * FROM work_items")}
    for truth in site.issues():
        item = items[truth.id]
        values = truth.custom_fields
        points = values[slots["story_points_field_id"]]
        assert item["story_points"] == points
        team = values[slots["team_field_id"]]
        assert item["team"] == (team["name"] if team else None)
        select = values[slots["custom_field_01_id"]]
        assert item["custom_field_01"] == (select["value"] if select else None)
        multi = values[slots["custom_field_02_id"]]
        assert item["custom_field_02"] == (", ".join(o["value"] for o in multi) if multi else None)
        user = values[slots["custom_field_03_id"]]
        assert item["custom_field_03"] == (user["displayName"] if user else None)
        overflow = item["custom_fields_overflow"]
        assert not set(slots.values()) & set(overflow)  # mapped fields leave the overflow
        if user:  # the account id of a mapped user field is still kept
            assert overflow["_account_ids"][slots["custom_field_03_id"]] == user["accountId"]
        assert item["custom_field_04"] is None
