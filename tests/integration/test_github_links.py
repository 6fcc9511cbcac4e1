"""Links between Jira work items and pull requests: keys found in titles, bodies, branches and
commit messages become links when a work item has that key; links Jira's development status
made (by repository name and number) point at the pull request once it is loaded; a key
edited out of a title takes its link with it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from etld.simulator.github_data import SiteOptions
from tests.integration.test_github_support import (
    NOW,
    MakeGitHub,
    add_work_items,
    github_factory,
    rows,
)
from tests.integration.test_jira_support import quiet_logs  # noqa: F401

KEYS = ("PROJ-1", "PROJ-2", "PROJ-3", "CORE-7")


@pytest.fixture
def make_github(
    pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> MakeGitHub:
    return github_factory(pool, aiohttp_server, monkeypatch)


LINKS = """
SELECT w.key, l.link_source, l.repository_full_name, l.pr_number, p.number AS loaded_number
  FROM work_items_prs_links l
  JOIN work_items w ON w.id = l.work_item_id
  LEFT JOIN pull_requests p ON p.id = l.pull_request_id
"""


async def test_links_come_from_every_source_and_from_dev_status(make_github: MakeGitHub) -> None:
    gh = await make_github(24, options=SiteOptions(keys=KEYS, big=False))
    site = gh.site
    items = await add_work_items(gh.pool, gh.tenant_id, KEYS[:3])  # CORE-7 is no work item
    some = site.pulls()[5]
    repo = site.repos[some.repo].full_name
    async with gh.pool.acquire() as conn:
        # What the Jira dev-status step leaves before GitHub is synced: name and number only,
        # the name spelled as Jira has it.
        await conn.execute(
            "INSERT INTO work_items_prs_links (tenant_id, work_item_id, repository_full_name, "
            "pr_number, link_source) VALUES ($1, $2, $3, $4, 'dev_status')",
            gh.tenant_id,
            items["PROJ-3"],
            repo.upper(),
            some.number,
        )

    await gh.sync(await gh.new_run(full_sync=True))

    found = await rows(gh.pool, LINKS)
    expected = {
        (key, source, site.repos[p.repo].full_name, p.number)
        for p in site.pulls()
        for key, source in p.links
        if key in items
    }
    made = {(r["key"], r["link_source"], r["repository_full_name"], r["pr_number"]) for r in found}
    assert made - {("PROJ-3", "dev_status", repo.upper(), some.number)} == expected
    assert {source for _, source, _, _ in expected} == {"title", "body", "branch", "commit"}
    assert all(r["loaded_number"] == r["pr_number"] for r in found)  # every link resolved
    assert "CORE-7" not in {r["key"] for r in found}

    # A key edited out of a title: the title link goes, links from elsewhere stay.
    titled = next(p for p in site.pulls() if any(s == "title" and k in items for k, s in p.links))
    key = next(k for k, s in titled.links if s == "title")
    site.touch(
        site.repos[titled.repo].full_name,
        titled.number,
        NOW + timedelta(hours=1),
        title="No key any more",
    )
    await gh.sync(await gh.new_run(full_sync=False, last_sync_date=NOW))
    after = await rows(gh.pool, LINKS)
    mine = {
        (r["key"], r["link_source"])
        for r in after
        if r["pr_number"] == titled.number
        and r["repository_full_name"] == site.repos[titled.repo].full_name
    }
    assert (key, "title") not in mine
    assert mine == {(k, s) for k, s in titled.links if k in items and s != "title"}
