"""A Jira sync against the simulator, step by step, compared with the site's ground truth:
projects, issue types, statuses, every work item, every transition, the workflow metrics,
dev-status links; then the same pages again, an incremental pass, deletions and a resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from etld.metrics.workflow import Transition, compute_workflow, default_flow_category
from etld.simulator import FaultPlan, IssueTruth, JiraSite
from etld.sources.base import get_source
from tests.integration.test_jira_support import (
    NOW,
    Crash,
    Jira,
    MakeJira,
    PageStore,
    jira_factory,
    quiet_logs,  # noqa: F401
)

ISSUES_STEP = "jira_issues_with_changelogs"
DEV_STEP = "jira_dev_status"
FAST_SIM = FaultPlan(requests_per_second=10_000)  # no burst limit: dev-status makes 300 calls


@pytest.fixture
def make_jira(pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> MakeJira:
    return jira_factory(pool, aiohttp_server, monkeypatch)


def step(name: str) -> Any:
    return get_source("jira").step(name)


async def rows(pool: asyncpg.Pool, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


def default_flow(site: JiraSite) -> dict[str, str]:
    return {s.id: default_flow_category(s.category.key) for s in site.statuses}


def truth_transitions(truth: IssueTruth) -> list[Transition]:
    return [
        Transition(t.history_id, t.at, t.from_status or None, t.to_status)
        for t in truth.transitions
    ]


def expected_custom_fields(site: JiraSite, truth: IssueTruth) -> dict[str, Any]:
    """The overflow the transform should build, spelled out per kind of field."""
    kinds = {cf.id: cf.kind for cf in site.custom_fields}
    out: dict[str, Any] = {}
    people: dict[str, Any] = {}
    for fid, raw in truth.custom_fields.items():
        if raw is None:
            continue
        kind = kinds[fid]
        if kind in ("select", "radio"):
            out[fid] = raw["value"]
        elif kind in ("multiselect", "checkboxes"):
            out[fid] = [o["value"] for o in raw]
        elif kind == "cascading":
            out[fid] = raw["value"] + (f" / {raw['child']['value']}" if "child" in raw else "")
        elif kind == "user":
            out[fid] = raw["displayName"]
            people[fid] = raw["accountId"]
        elif kind == "users":
            out[fid] = [u["displayName"] for u in raw]
            people[fid] = [u["accountId"] for u in raw]
        elif kind in ("team",):
            out[fid] = raw["name"]
        elif kind in ("sprint", "versions"):
            out[fid] = [x["name"] for x in raw]
        elif kind == "datetime":
            out[fid] = datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC).isoformat()
        elif kind == "adf":
            out[fid] = "\n".join(p["content"][0]["text"] for p in raw["content"])
        else:  # numbers, text, url, date, labels are kept as they are
            out[fid] = raw
    if truth.pull_requests:  # the Development field, reduced to its pull request count
        out["customfield_10000"] = len(truth.pull_requests)
    if people:
        out["_account_ids"] = people
    return out


async def full_sync(jira: Jira, names: list[str] | None = None) -> dict[str, Any]:
    run = await jira.new_run(full_sync=True)
    return await jira.sync(run, names)


async def test_full_sync_matches_the_ground_truth(make_jira: MakeJira) -> None:
    jira = await make_jira(300, faults=FAST_SIM)
    site = jira.site
    # Hand-checked issue: no history of its own, then three moves at known times.
    hand = next(
        t
        for t in site.issues()
        if not t.transitions and t.issue_type_id in ("10001", "3") and t.project_key == "PROJ"
    )
    t1 = hand.updated + timedelta(days=1)
    t2, t3 = t1 + timedelta(hours=2), t1 + timedelta(hours=2, minutes=30)
    for at, status in ((t1, "In Progress"), (t2, "In Review"), (t3, "Done")):
        site.touch([hand.key], at, to_status=status)

    result = await full_sync(jira)

    # Projects, issue types (each once, however many projects share it), their links.
    projects = await rows(jira.pool, "SELECT external_id, key, name FROM projects ORDER BY key")
    assert projects == sorted(
        ({"external_id": p.id, "key": p.key, "name": p.name} for p in site.projects),
        key=lambda p: p["key"],
    )
    wits = await rows(jira.pool, "SELECT external_id, name, subtask FROM wits")
    served = {t.id: t for p in site.projects for t in p.issue_types}
    assert len(wits) == len(served)
    assert {w["external_id"]: (w["name"], w["subtask"]) for w in wits} == {
        i: (t.name, t.subtask) for i, t in served.items()
    }
    links = await rows(
        jira.pool,
        "SELECT p.external_id AS p, w.external_id AS w FROM projects_wits x "
        "JOIN projects p ON p.id = x.project_id JOIN wits w ON w.id = x.wit_id",
    )
    assert {(r["p"], r["w"]) for r in links} == {
        (p.id, t.id) for p in site.projects for t in p.issue_types
    }

    # Statuses with their category, a default mapping each, and the project relations.
    statuses = await rows(
        jira.pool,
        "SELECT s.external_id, s.name, s.category, m.flow_category, m.source FROM statuses s "
        "JOIN status_mappings m ON m.status_id = s.id",
    )
    assert {s["external_id"]: (s["name"], s["category"]) for s in statuses} == {
        s.id: (s.name, s.category.key) for s in site.statuses
    }
    assert all(s["source"] == "default" for s in statuses)
    assert {s["external_id"]: s["flow_category"] for s in statuses} == default_flow(site)
    relations = await rows(
        jira.pool,
        "SELECT p.external_id AS p, s.external_id AS s, w.external_id AS w "
        "FROM projects_statuses x JOIN projects p ON p.id = x.project_id "
        "JOIN statuses s ON s.id = x.status_id JOIN wits w ON w.id = x.wit_id",
    )
    assert {(r["p"], r["s"], r["w"]) for r in relations} == {
        (p.id, s, t.id)
        for p in site.projects
        for t in p.issue_types
        for s in p.workflows[t.id].statuses
    }

    # Every work item, field by field, with its transitions and metrics.
    items = {
        r["external_id"]: r
        for r in await rows(
            jira.pool,
            "SELECT w.*, p.external_id AS project_ext, t.external_id AS wit_ext, "
            "s.external_id AS status_ext FROM work_items w "
            "JOIN projects p ON p.id = w.project_id JOIN wits t ON t.id = w.wit_id "
            "JOIN statuses s ON s.id = w.status_id",
        )
    }
    changes: dict[int, list[dict[str, Any]]] = {}
    for r in await rows(
        jira.pool,
        "SELECT c.*, f.external_id AS from_ext, t.external_id AS to_ext FROM changelogs c "
        "LEFT JOIN statuses f ON f.id = c.from_status_id JOIN statuses t ON t.id = c.to_status_id "
        "ORDER BY c.work_item_id, c.transition_change_date, c.external_id",
    ):
        changes.setdefault(r["work_item_id"], []).append(r)
    truths = list(site.issues())
    assert len(items) == len(truths) == 300
    assert any(t.history_count > 100 for t in truths)  # cut changelogs were completed
    priorities, resolutions = dict(site.catalog.priorities), dict(site.catalog.resolutions)
    flow = default_flow(site)
    for truth in truths:
        item = items[truth.id]
        assert item["key"] == truth.key
        assert (item["project_ext"], item["wit_ext"], item["status_ext"]) == (
            truth.project_id,
            truth.issue_type_id,
            truth.status_id,
        )
        assert item["summary"] == truth.summary
        assert item["description"] == truth.description_text
        assert item["labels"] == list(truth.labels)
        assert item["parent_key"] == truth.parent_key
        assert item["assignee_account_id"] == truth.assignee_account_id
        assert item["priority"] == priorities[truth.priority_id]
        assert item["resolution"] == (
            resolutions[truth.resolution_id] if truth.resolution_id else None
        )
        assert (item["created"], item["updated"]) == (truth.created, truth.updated)
        assert item["custom_fields_overflow"] == expected_custom_fields(site, truth), truth.key
        assert item["deleted_at"] is None
        assert item["dev_pr_count"] == len(truth.pull_requests)
        got = [
            (c["external_id"], c["from_ext"], c["to_ext"], c["transition_change_date"])
            for c in changes.get(item["id"], [])
        ]
        assert got == [
            (t.history_id, t.from_status or None, t.to_status, t.at) for t in truth.transitions
        ], truth.key
        metrics, expected_rows = compute_workflow(truth.created, truth_transitions(truth), flow)
        assert {k: item[k] for k in metrics.as_row()} == metrics.as_row(), truth.key
        assert [c["time_in_status_seconds"] for c in changes.get(item["id"], [])] == [
            r.time_in_status_seconds for r in expected_rows
        ]

    # The hand-checked issue: Backlog until t1, In Progress 2 h, In Review 30 min, then Done.
    item = items[hand.id]
    assert [c["time_in_status_seconds"] for c in changes[item["id"]]] == [
        (t1 - hand.created).total_seconds(),
        7200.0,
        1800.0,
    ]
    assert (item["work_first_started_at"], item["work_last_completed_at"]) == (t1, t3)
    assert item["total_work_time_seconds"] == 9000.0  # In Review is in progress by default
    assert item["total_review_time_seconds"] == 0.0
    assert item["total_cycle_time_seconds"] == 9000.0
    assert item["total_lead_time_seconds"] == (t3 - hand.created).total_seconds()
    assert (item["total_work_starts"], item["total_completions"]) == (1, 1)
    assert (item["total_backlog_returns"], item["workflow_complexity_score"]) == (0, 0)
    assert not item["rework_indicator"]
    assert not item["direct_completion"]

    # Dev-status links for every issue with pull requests, and nothing else.
    dev = await rows(
        jira.pool,
        "SELECT w.external_id, l.repository_full_name, l.pr_number, l.pr_url, l.link_source "
        "FROM work_items_prs_links l JOIN work_items w ON w.id = l.work_item_id",
    )
    assert {
        (d["external_id"], d["repository_full_name"], d["pr_number"], d["pr_url"]) for d in dev
    } == {(t.id, pr.repo, pr.number, pr.url) for t in truths for pr in t.pull_requests}
    assert {d["link_source"] for d in dev} == {"dev_status"}

    # Embeddings were asked for every loaded work item; calls were few.
    _, _, collector = result[ISSUES_STEP]
    assert {e for _, e, _ in collector.embeds} == {t.id for t in truths}
    calls = jira.counter.per_path()
    assert calls["/rest/api/3/search/jql"] == 3 + 1 + 1  # pages, cut changelogs by id, id scan
    assert calls["/rest/api/3/changelog/bulkfetch"] == 1
    assert not any("/changelog" in p and "/issue/" in p for p in calls)


TABLES = (
    "SELECT * FROM projects ORDER BY id",
    "SELECT * FROM wits ORDER BY id",
    "SELECT * FROM projects_wits ORDER BY project_id, wit_id",
    "SELECT * FROM statuses ORDER BY id",
    "SELECT * FROM status_mappings ORDER BY id",
    "SELECT * FROM projects_statuses ORDER BY id",
    "SELECT * FROM work_items ORDER BY id",
    "SELECT * FROM changelogs ORDER BY id",
    "SELECT * FROM work_items_prs_links ORDER BY id",
)


async def snapshot(pool: asyncpg.Pool) -> list[list[dict[str, Any]]]:
    return [await rows(pool, sql) for sql in TABLES]


async def test_transforming_the_same_pages_again_changes_nothing(make_jira: MakeJira) -> None:
    jira = await make_jira(300, faults=FAST_SIM)
    result = await full_sync(jira)
    before = await snapshot(jira.pool)
    run = jira.run
    assert run is not None
    for name, (store, _, _) in result.items():
        records, collector = await jira.transform(run, step(name), store.raw_ids)
        if name == ISSUES_STEP:
            assert records == 0
            assert collector.embeds == []
    assert await snapshot(jira.pool) == before


async def test_incremental_pass_stores_only_the_touched_issues(make_jira: MakeJira) -> None:
    jira = await make_jira(300, faults=FAST_SIM)
    first = await full_sync(
        jira, ["jira_projects_and_issue_types", "jira_statuses_and_relationships", ISSUES_STEP]
    )
    touched = jira.site.issue_keys()[::15][:20]
    jira.site.touch(touched, NOW + timedelta(hours=1))
    jira.counter.reset()

    run = await jira.new_run(full_sync=False, last_sync_date=NOW + timedelta(minutes=30))
    store = await jira.extract(run, step(ISSUES_STEP))
    pages = await jira.pages(store.raw_ids)
    stored = {i["key"] for p in pages for i in p.payload["search"]["issues"]}
    assert stored == set(touched)
    assert {p.type for p in pages} == {"jira_issues"}  # no id scan on an incremental run
    calls = jira.counter.per_path()
    assert calls["/rest/api/3/myself"] == 1  # the JQL dates are in the site's time zone
    assert 'updated >= "2025-03-01 01:25"' in (await jira_checkpoint(jira, run.run_id))["jql"]

    await jira.transform(run, step(ISSUES_STEP), store.raw_ids)
    items = {
        r["key"]: r for r in await rows(jira.pool, "SELECT key, summary, updated FROM work_items")
    }
    for key in touched:
        assert items[key]["summary"].endswith("(edit 1)")
        assert items[key]["updated"] == NOW + timedelta(hours=1)

    # An older page transformed late never overwrites the newer version.
    old_store = first[ISSUES_STEP][0]
    assert jira.run is not None
    await jira.transform(jira.run, step(ISSUES_STEP), old_store.raw_ids)
    again = {
        r["key"]: r["summary"] for r in await rows(jira.pool, "SELECT key, summary FROM work_items")
    }
    assert all(again[k].endswith("(edit 1)") for k in touched)

    # Dev-status asks only about the issues of the window whose Development field reports
    # pull requests.
    dev = await jira.extract(run, step(DEV_STEP))
    asked = {i for _, payload in dev.follow_ups for i in payload["issue_ids"]}
    with_prs = {jira.site.issue(k).id for k in touched if jira.site.pull_requests(k)}
    assert with_prs
    assert asked == with_prs


async def jira_checkpoint(jira: Jira, run_id: int) -> dict[str, Any]:
    async with jira.pool.acquire() as conn:
        value = await conn.fetchval(
            "SELECT value FROM etl_run_checkpoints WHERE run_id = $1 AND key = $2",
            run_id,
            ISSUES_STEP,
        )
    assert isinstance(value, dict)
    return value


async def test_full_sync_soft_deletes_vanished_issues(make_jira: MakeJira) -> None:
    jira = await make_jira(120)
    names = ["jira_projects_and_issue_types", "jira_statuses_and_relationships", ISSUES_STEP]
    await full_sync(jira, names)
    gone = jira.site.issue_keys()[3:8]
    jira.site.delete(gone)

    run = await jira.new_run(full_sync=True)
    store = await jira.extract(run, step(ISSUES_STEP))
    _, collector = await jira.transform(run, step(ISSUES_STEP), store.raw_ids)
    deleted = {
        r["key"]
        for r in await rows(jira.pool, "SELECT key FROM work_items WHERE deleted_at IS NOT NULL")
    }
    assert deleted == set(gone)
    assert {(e, op) for t, e, op in collector.embeds if op == "delete"} == {
        (i["external_id"], "delete")
        for i in await rows(
            jira.pool, "SELECT external_id FROM work_items WHERE deleted_at IS NOT NULL"
        )
    }

    # An incremental run leaves deletions alone; it has no id scan.
    run = await jira.new_run(full_sync=False, last_sync_date=NOW)
    store = await jira.extract(run, step(ISSUES_STEP))
    await jira.transform(run, step(ISSUES_STEP), store.raw_ids)
    assert len(await rows(jira.pool, "SELECT 1 FROM work_items WHERE deleted_at IS NOT NULL")) == 5


async def test_a_redelivered_extraction_resumes_from_the_checkpoint(make_jira: MakeJira) -> None:
    jira = await make_jira(300)
    await full_sync(jira, ["jira_projects_and_issue_types"])
    run = await jira.new_run(full_sync=True, config={"search_page_size": 50})
    crashing = PageStore(jira.pool, run, crash_after=3)
    with pytest.raises(Crash):
        await jira.extract(run, step(ISSUES_STEP), crashing)
    searches_before = jira.counter.count("/rest/api/3/search/jql")
    assert (await jira_checkpoint(jira, run.run_id))["page"] == 3

    resumed = await jira.extract(run, step(ISSUES_STEP))
    keys = [k for _, k in crashing.keys + resumed.keys]
    assert len(keys) == len(set(keys))  # no page stored twice
    assert [k for k in keys if k.startswith("p")] == [f"p{n:06d}" for n in range(6)]
    assert {"ids", "c000000"} <= set(keys)
    # The resumed attempt fetched the page that crashed again, and nothing before it.
    assert jira.counter.count("/rest/api/3/search/jql") - searches_before == 3 + 1 + 1
    pages = await jira.pages(crashing.raw_ids + resumed.raw_ids)
    seen = {
        i["id"] for p in pages if p.type == "jira_issues" for i in p.payload["search"]["issues"]
    }
    assert seen == {t.id for t in jira.site.issues()}


async def test_configured_projects_limit_the_sync(make_jira: MakeJira) -> None:
    jira = await make_jira(150, settings={"projects": ["proj", "OPS"]})
    await full_sync(
        jira, ["jira_projects_and_issue_types", "jira_statuses_and_relationships", ISSUES_STEP]
    )
    projects = await rows(jira.pool, "SELECT key FROM projects ORDER BY key")
    assert [p["key"] for p in projects] == ["OPS", "PROJ"]
    keys = {r["key"] for r in await rows(jira.pool, "SELECT key FROM work_items")}
    assert keys == {t.key for t in jira.site.issues() if t.project_key in ("PROJ", "OPS")}
    assert jira.counter.count("/rest/api/3/project/CORE") == 0
    assert 'project in ("PROJ", "OPS")' in (await jira_checkpoint(jira, jira.run.run_id))["jql"]  # type: ignore[union-attr]


async def test_metrics_follow_the_tenant_mapping_and_user_mappings_survive(
    make_jira: MakeJira,
) -> None:
    jira = await make_jira(150)
    names = ["jira_projects_and_issue_types", "jira_statuses_and_relationships", ISSUES_STEP]
    result = await full_sync(jira, names)
    async with jira.pool.acquire() as conn:
        await conn.execute(
            "UPDATE status_mappings SET flow_category = 'review', source = 'user' "
            "WHERE status_id = (SELECT id FROM statuses WHERE external_id = '10003')"
        )
    run = jira.run
    assert run is not None
    for name in names:  # a later sync, from the same pages: defaults refresh, users' do not
        await jira.transform(run, step(name), result[name][0].raw_ids)
    mapping = await rows(
        jira.pool,
        "SELECT s.external_id, m.flow_category, m.source FROM status_mappings m "
        "JOIN statuses s ON s.id = m.status_id WHERE s.external_id = '10003'",
    )
    assert mapping == [{"external_id": "10003", "flow_category": "review", "source": "user"}]

    flow = {**default_flow(jira.site), "10003": "review"}
    items = {r["external_id"]: r for r in await rows(jira.pool, "SELECT * FROM work_items")}
    reviewed = 0
    for truth in jira.site.issues():
        metrics, _ = compute_workflow(truth.created, truth_transitions(truth), flow)
        assert {k: items[truth.id][k] for k in metrics.as_row()} == metrics.as_row()
        reviewed += metrics.total_review_time_seconds > 0
    assert reviewed > 10
