"""Jira through the whole daemon: `run_sync` (what `etld sync` runs) starts runs that go
through RabbitMQ and the stage workers into PostgreSQL, against the simulator on 127.0.0.1.

A full sync of 2,000 issues must leave exactly the site's ground truth; an incremental run
touches only what changed; a retransform rebuilds from stored pages alone; deletions, rate
limits, refused credentials and a malformed page each end the way an operator expects.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from etld.config import Config
from etld.daemon import Daemon
from etld.metrics.workflow import compute_workflow
from etld.simulator import (
    ApiCallCounter,
    FaultKind,
    FaultPlan,
    JiraSite,
    create_jira_app,
    generate_site,
)
from etld.sync import SyncReport, SyncRequest, run_sync
from tests.integration.test_jira_sync import (
    default_flow,
    expected_custom_fields,
    rows,
    truth_transitions,
)

NOW = datetime(2025, 3, 1, tzinfo=UTC)
TOKEN_ENV = "ETLD_E2E_JIRA_TOKEN"
USER, TOKEN = "etl@example.com", "e2e-token"
SEARCH = "/rest/api/3/search/jql"
STEPS = (
    "jira_projects_and_issue_types",
    "jira_statuses_and_relationships",
    "jira_issues_with_changelogs",
    "jira_dev_status",
)


@dataclass
class World:
    site: JiraSite
    counter: ApiCallCounter
    server: TestServer
    config: Config
    daemon: Daemon
    lines: list[str] = field(default_factory=list)

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.daemon.pool is not None
        return self.daemon.pool

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def sync(self, **options: Any) -> SyncReport:
        request = SyncRequest("acme", "jira", timeout=60, **options)
        return await run_sync(self.config, request, say=self.lines.append, daemon=self.daemon)


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture(autouse=True)
def quiet_logs() -> Any:
    with capture_logs() as logs:
        yield logs


@pytest.fixture
async def make_world(
    make_config: Callable[..., Config], aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeWorld]:
    daemons: list[Daemon] = []

    async def build(
        issues: int,
        *,
        faults: FaultPlan | None = None,
        secured: bool = False,
        token: str = TOKEN,
        active: bool = True,
    ) -> World:
        monkeypatch.setenv(TOKEN_ENV, token)
        site = generate_site(issues, 11, now=NOW)
        counter = ApiCallCounter()
        plan = faults if faults is not None else FaultPlan(requests_per_second=10_000)
        app = create_jira_app(
            site,
            user=USER if secured else None,
            token=TOKEN if secured else None,
            faults=plan,
            counter=counter,
        )
        server: TestServer = await aiohttp_server(app)
        config = make_config(
            workers={"free": {"extraction": 4, "transform": 4, "embedding": 0}},
            pipeline={"job_workers": 1},
            scheduler={"enabled": False},
            tenants=[{"name": "acme", "tier": "free"}],
            integrations=[
                {
                    "tenant": "acme",
                    "name": "jira",
                    "provider": "jira",
                    "base_url": str(server.make_url("")).rstrip("/"),
                    "username": USER,
                    "token_env": TOKEN_ENV,
                    "allow_private_network": True,
                    "active": active,
                }
            ],
        )
        daemon = Daemon(config, frozenset({"workers"}))
        daemons.append(daemon)
        await daemon.start()
        return World(site, counter, server, config, daemon)

    yield build
    for daemon in daemons:
        await daemon.shutdown()


def assert_finished(report: SyncReport) -> None:
    assert report.outcome == "FINISHED", (report.error, report.dead_letters)
    assert [s["name"] for s in report.steps] == list(STEPS)
    for step in report.steps:
        for stage in ("extraction", "transform", "embedding"):
            assert step[stage]["state"] == "finished", (step["name"], stage, step)
            assert step[stage]["done"] == step[stage]["created"]
    assert report.dead_letters == []


async def assert_ground_truth(pool: asyncpg.Pool, site: JiraSite) -> None:
    """Every live issue, field by field, with every transition and its metrics."""
    items = {
        r["external_id"]: r
        for r in await rows(
            pool,
            "SELECT w.*, p.external_id AS project_ext, t.external_id AS wit_ext, "
            "s.external_id AS status_ext FROM work_items w "
            "JOIN projects p ON p.id = w.project_id JOIN wits t ON t.id = w.wit_id "
            "JOIN statuses s ON s.id = w.status_id WHERE w.deleted_at IS NULL",
        )
    }
    changes: dict[int, list[dict[str, Any]]] = {}
    for r in await rows(
        pool,
        "SELECT c.work_item_id, c.external_id, c.transition_change_date, "
        "c.time_in_status_seconds, f.external_id AS from_ext, t.external_id AS to_ext "
        "FROM changelogs c LEFT JOIN statuses f ON f.id = c.from_status_id "
        "JOIN statuses t ON t.id = c.to_status_id "
        "ORDER BY c.work_item_id, c.transition_change_date, c.external_id",
    ):
        changes.setdefault(r["work_item_id"], []).append(r)
    truths = list(site.issues())
    assert set(items) == {t.id for t in truths}
    flow = default_flow(site)
    priorities, resolutions = dict(site.catalog.priorities), dict(site.catalog.resolutions)
    for truth in truths:
        item = items[truth.id]
        assert (item["key"], item["project_ext"], item["wit_ext"], item["status_ext"]) == (
            truth.key,
            truth.project_id,
            truth.issue_type_id,
            truth.status_id,
        )
        assert (item["summary"], item["description"]) == (truth.summary, truth.description_text)
        assert item["labels"] == list(truth.labels)
        assert (item["parent_key"], item["assignee_account_id"]) == (
            truth.parent_key,
            truth.assignee_account_id,
        )
        assert item["priority"] == priorities[truth.priority_id]
        assert item["resolution"] == (
            resolutions[truth.resolution_id] if truth.resolution_id else None
        )
        assert (item["created"], item["updated"]) == (truth.created, truth.updated)
        assert item["custom_fields_overflow"] == expected_custom_fields(site, truth), truth.key
        got = [
            (c["external_id"], c["from_ext"], c["to_ext"], c["transition_change_date"])
            for c in changes.get(item["id"], [])
        ]
        assert got == [
            (t.history_id, t.from_status or None, t.to_status, t.at) for t in truth.transitions
        ], truth.key
        metrics, expected = compute_workflow(truth.created, truth_transitions(truth), flow)
        assert {k: item[k] for k in metrics.as_row()} == metrics.as_row(), truth.key
        assert [c["time_in_status_seconds"] for c in changes.get(item["id"], [])] == [
            e.time_in_status_seconds for e in expected
        ]
    links = await rows(
        pool,
        "SELECT w.external_id, l.repository_full_name, l.pr_number FROM work_items_prs_links l "
        "JOIN work_items w ON w.id = l.work_item_id",
    )
    assert {(r["external_id"], r["repository_full_name"], r["pr_number"]) for r in links} == {
        (t.id, pr.repo, pr.number) for t in truths for pr in t.pull_requests
    }


async def test_full_incremental_and_retransform_runs_match_the_site(make_world: MakeWorld) -> None:
    world = await make_world(2000)
    truths = list(world.site.issues())
    assert sum(t.history_count > 100 for t in truths) >= 10  # cut changelogs get completed

    full = await world.sync(full=True)
    assert_finished(full)
    await assert_ground_truth(world.pool, world.site)
    assert full.tables["work_items"] == {"rows": 2000, "deleted": 0}
    assert full.tables["changelogs"]["rows"] == sum(len(t.transitions) for t in truths)
    assert full.api_calls == world.counter.total
    searches = world.counter.count(SEARCH)
    assert searches <= 20 + 2 * 3 + 1  # 20 pages, cut changelogs in batches, the id scan
    assert any(line.startswith("[") and "Issues & Changelogs" in line for line in world.lines)

    # Incremental: only the touched issues are asked for, stored and rewritten.
    touched = world.site.issue_keys()[::97][:20]
    before = {
        r["key"]: r["last_updated_at"]
        for r in await rows(world.pool, "SELECT key, last_updated_at FROM work_items")
    }
    world.site.touch(touched)
    world.counter.reset()
    incremental = await world.sync()
    assert_finished(incremental)
    assert incremental.trigger == "manual"
    assert not incremental.full_sync
    pages = await rows(
        world.pool,
        "SELECT type, raw_payload::json AS raw_payload FROM raw_extraction_data WHERE run_id = $1",
        incremental.run_id,
    )
    stored = {
        i["key"]
        for p in pages
        if p["type"] == "jira_issues"
        for i in p["raw_payload"]["search"]["issues"]
    }
    assert stored == set(touched)
    assert "jira_issue_ids" not in {p["type"] for p in pages}  # no id scan when incremental
    after = {
        r["key"]: r["last_updated_at"]
        for r in await rows(world.pool, "SELECT key, last_updated_at FROM work_items")
    }
    assert {k for k in after if after[k] != before[k]} == set(touched)
    assert world.counter.count(SEARCH) == 1
    await assert_ground_truth(world.pool, world.site)

    # Retransform: the tables come back from the stored pages, without a single call.
    snapshot = await rows(world.pool, "SELECT * FROM work_items ORDER BY external_id")
    async with world.pool.acquire() as conn:
        await conn.execute("DELETE FROM work_items")
    world.counter.reset()
    rebuilt = await world.sync(retransform=True)
    assert_finished(rebuilt)
    assert rebuilt.trigger == "retransform"
    assert world.counter.total == 0
    assert rebuilt.api_calls == 0
    volatile = {"id", "created_at", "last_updated_at", "project_id", "wit_id", "status_id"}
    again = await rows(world.pool, "SELECT * FROM work_items ORDER BY external_id")
    assert [{k: v for k, v in r.items() if k not in volatile} for r in again] == [
        {k: v for k, v in r.items() if k not in volatile} for r in snapshot
    ]
    await assert_ground_truth(world.pool, world.site)


async def test_a_full_sync_soft_deletes_what_the_site_deleted(make_world: MakeWorld) -> None:
    world = await make_world(150)
    assert_finished(await world.sync(full=True))
    gone = world.site.issue_keys()[10:17]
    world.site.delete(gone)
    report = await world.sync(full=True)
    assert_finished(report)
    deleted = await rows(world.pool, "SELECT key FROM work_items WHERE deleted_at IS NOT NULL")
    assert {r["key"] for r in deleted} == set(gone)
    assert report.tables["work_items"] == {"rows": 150, "deleted": len(gone)}
    await assert_ground_truth(world.pool, world.site)


async def test_rate_limits_are_waited_out(make_world: MakeWorld) -> None:
    plan = FaultPlan(requests_per_second=10_000)
    plan.schedule(FaultKind.RATE_LIMIT, count=2, path_prefix=SEARCH, retry_after=1)
    plan.schedule(FaultKind.RATE_LIMIT, count=1, path_prefix="/rest/api/3/project", retry_after=1)
    world = await make_world(300, faults=plan)
    report = await world.sync(full=True)
    assert_finished(report)
    assert plan.injected[FaultKind.RATE_LIMIT] == 3
    assert plan.pending == 0
    await assert_ground_truth(world.pool, world.site)


async def test_refused_credentials_fail_the_run_fast_without_retries(
    make_world: MakeWorld,
) -> None:
    world = await make_world(50, secured=True, token="wrong-token")
    began = time.monotonic()
    report = await world.sync(full=True)
    assert time.monotonic() - began < 5
    assert report.outcome == "FAILED"
    assert report.error is not None
    assert f"Jira rejected the credentials for {world.base_url}" in report.error
    assert len(report.dead_letters) == 1
    assert "rejected the credentials" in report.dead_letters[0]["reason"]
    assert world.counter.total == 1  # one refused call: no retry storm
    assert report.steps[0]["extraction"]["state"] == "failed"
    assert all(s["extraction"]["state"] == "idle" for s in report.steps[1:])


async def test_a_malformed_page_is_dead_lettered_and_named(make_world: MakeWorld) -> None:
    plan = FaultPlan(requests_per_second=10_000)
    plan.schedule(FaultKind.INVALID_JSON, count=1, path_prefix=SEARCH)
    world = await make_world(150, faults=plan)
    report = await world.sync(full=True)
    assert report.outcome == "FAILED"
    assert len(report.dead_letters) == 1
    reason = report.dead_letters[0]["reason"]
    assert "malformed response to POST" in reason
    assert "/search/jql" in reason
    assert report.error is not None
    assert "jira_issues_with_changelogs extraction failed" in report.error
    assert "malformed response" in report.error
    assert world.counter.count(SEARCH) == 1  # rejected at once, never retried
    issues = next(s for s in report.steps if s["name"] == "jira_issues_with_changelogs")
    assert issues["extraction"]["state"] == "failed"


async def test_an_inactive_integration_is_skipped(make_world: MakeWorld) -> None:
    world = await make_world(10, active=False)
    report = await world.sync()
    assert report.outcome == "SKIPPED"
    assert report.exit_code == 1
    assert report.error == "Integration is inactive - job skipped"
    assert world.counter.total == 0
