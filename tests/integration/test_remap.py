"""Remapping without calling Jira: a custom field mapping change followed by a re-transform
of the stored pages moves values between columns and the overflow; a status remap
recomputes the workflow metrics from stored changelogs. Neither touches another tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from etld import mappings
from etld.config import Config
from etld.daemon import Daemon
from etld.metrics.workflow import METRIC_COLUMNS, compute_workflow
from etld.simulator import ApiCallCounter, FaultPlan, create_jira_app, generate_site
from etld.web import api_mappings
from etld.web.app import create_app
from tests.integration.test_jira_support import (
    NOW,
    SITE_SEED,
    TOKEN,
    TOKEN_ENV,
    USER,
    Jira,
    MakeJira,
    jira_factory,
    quiet_logs,  # noqa: F401
)
from tests.integration.test_jira_sync import (
    default_flow,
    expected_custom_fields,
    step,
    truth_transitions,
)
from tests.integration.test_mappings_api import (
    CF_STEP,
    ISSUES_STEP,
    META_STEPS,
    Client,
    World,
    build_world,
    field_of,
    finish_runs,
)

SYNC_STEPS = (*META_STEPS, ISSUES_STEP)
MAPPING = "/app/etl/custom-fields/mapping"
STATUSES = "/app/etl/status-mappings"


@pytest.fixture
def make_jira(pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> MakeJira:
    return jira_factory(pool, aiohttp_server, monkeypatch)


async def retransform(world: World, tenant: str) -> None:
    """What a re-transform run does: every stored page of each step, transformed again."""
    jira = world.acme if tenant == "acme" else world.beta
    assert jira.run is not None
    for name in SYNC_STEPS:
        store = world.results[tenant][name][0]
        await jira.transform(jira.run, step(name), store.raw_ids)


async def items_of(pool: asyncpg.Pool, jira: Jira) -> dict[str, dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM work_items WHERE tenant_id = $1 ORDER BY id", jira.tenant_id
        )
    return {r["external_id"]: dict(r) for r in rows}


def as_column(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(value)
    return value


def expected_fields(
    jira: Jira, truth: Any, mapping: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(mapped columns, overflow) of an issue under `mapping` (slot -> field id)."""
    overflow = expected_custom_fields(jira.site, truth)
    columns: dict[str, Any] = dict.fromkeys(mappings.SLOTS)
    for slot, fid in mapping.items():
        value = overflow.pop(fid, None)
        columns[slot] = float(value) if slot == "story_points" and value is not None else None
        if slot != "story_points":
            columns[slot] = as_column(value)
    return columns, overflow


def check_fields(jira: Jira, items: dict[str, dict[str, Any]], mapping: dict[str, str]) -> None:
    filled = dict.fromkeys(mapping, 0)
    for truth in jira.site.issues():
        item = items[truth.id]
        columns, overflow = expected_fields(jira, truth, mapping)
        assert {s: item[s] for s in mappings.SLOTS} == columns, truth.key
        assert item["custom_fields_overflow"] == overflow, truth.key
        for slot in mapping:
            filled[slot] += columns[slot] is not None
    assert all(filled.values()), filled  # every mapped slot holds values somewhere


async def put(client: Client, world: World, path: str, body: dict[str, Any], who: str) -> Any:
    resp = await client.put(path, json=body, headers=world.auth(who))
    assert resp.status in (200, 202), await resp.text()
    return await resp.json()


async def test_mapping_change_and_retransform_move_values_without_api_calls(
    make_jira: MakeJira, db_url: str, aiohttp_client: Any
) -> None:
    world = await build_world(make_jira, db_url, 120, [CF_STEP, *SYNC_STEPS])
    client: Client = await aiohttp_client(create_app(world.daemon))
    acme, beta, pool = world.acme, world.beta, world.pool
    kinds = {k: field_of(acme, k) for k in ("story_points", "team", "select", "multiselect")}
    kinds["user"] = field_of(acme, "user")
    check_fields(acme, await items_of(pool, acme), {})  # unmapped: all in the overflow
    acme.counter.reset()
    beta_before = await items_of(pool, beta)

    first = {
        "story_points": kinds["story_points"],
        "team": kinds["team"],
        "custom_field_01": kinds["select"],
        "custom_field_02": kinds["multiselect"],
        "custom_field_03": kinds["user"],
    }
    data = await put(
        client, world, MAPPING, {"integration_id": acme.integration_id, **first}, "acme"
    )
    assert data["retransform"]["outcome"] == "started"
    await retransform(world, "acme")
    await finish_runs(pool)
    check_fields(acme, await items_of(pool, acme), first)

    # The select moves to another column, the multiselect and the team go back to the overflow.
    second = {
        "story_points": kinds["story_points"],
        "custom_field_05": kinds["select"],
        "custom_field_03": kinds["user"],
    }
    data = await put(
        client, world, MAPPING, {"integration_id": acme.integration_id, **second}, "acme"
    )
    assert data["retransform"]["outcome"] == "started"
    await retransform(world, "acme")
    await finish_runs(pool)
    items = await items_of(pool, acme)
    check_fields(acme, items, second)
    assert all(i["custom_field_01"] is None and i["team"] is None for i in items.values())

    # The GIN-indexed overflow answers containment queries on unmapped fields.
    multi = kinds["multiselect"]
    async with pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT external_id FROM work_items WHERE tenant_id = $1 "
            "AND custom_fields_overflow @> $2::jsonb",
            acme.tenant_id,
            {multi: ["Web"]},
        )
    assert {r["external_id"] for r in found} == {
        t.id
        for t in acme.site.issues()
        if any(o["value"] == "Web" for o in t.custom_fields.get(multi) or ())
    }

    assert acme.counter.total == 0  # no call to Jira for any of it
    assert await items_of(pool, beta) == beta_before  # the other tenant's rows never moved

    # The other tenant's own mapping changes its rows only.
    acme_before = await items_of(pool, acme)
    own = {"custom_field_02": kinds["select"]}
    await put(client, world, MAPPING, {"integration_id": beta.integration_id, **own}, "beta")
    await retransform(world, "beta")
    check_fields(beta, await items_of(pool, beta), own)
    assert await items_of(pool, acme) == acme_before
    assert acme.counter.total == 0


def metrics_of(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in METRIC_COLUMNS}


async def test_status_remap_recomputes_metrics_from_changelogs(
    make_jira: MakeJira, db_url: str, aiohttp_client: Any
) -> None:
    site = generate_site(150, SITE_SEED, now=NOW)
    # Hand-checked issue: no history of its own, then In Progress 2 h, In Review 30 min, Done.
    hand = next(
        t
        for t in site.issues()
        if not t.transitions and t.issue_type_id in ("10001", "3") and t.project_key == "PROJ"
    )
    t1 = hand.updated + timedelta(days=1)
    t2, t3 = t1 + timedelta(hours=2), t1 + timedelta(hours=2, minutes=30)
    for at, status in ((t1, "In Progress"), (t2, "In Review"), (t3, "Done")):
        site.touch([hand.key], at, to_status=status)
    assert [t.to_status for t in site.issue(hand.key).transitions][1] == "10003"
    world = await build_world(make_jira, db_url, 150, SYNC_STEPS, site=site)
    client: Client = await aiohttp_client(create_app(world.daemon))
    acme, beta, pool = world.acme, world.beta, world.pool
    acme.counter.reset()
    beta_before = await items_of(pool, beta)

    before = (await items_of(pool, acme))[hand.id]
    assert (before["total_work_time_seconds"], before["total_review_time_seconds"]) == (9000, 0)

    body = {
        "integration_id": acme.integration_id,
        "mappings": [{"status_id": "10003", "flow_category": "review"}],
    }
    data = await put(client, world, STATUSES, body, "acme")
    through = {
        t.id
        for t in site.issues()
        if any("10003" in (x.from_status, x.to_status) for x in t.transitions)
    }
    recompute = data["recompute"]
    assert recompute["mode"] == "inline"
    assert recompute["items_to_recompute"] == recompute["items_recomputed"] == len(through)
    assert 10 < recompute["items_updated"] <= len(through)

    items = await items_of(pool, acme)
    item = items[hand.id]
    assert item["total_work_time_seconds"] == 7200.0  # In Progress only
    assert item["total_review_time_seconds"] == 1800.0  # In Review is review now
    assert item["total_cycle_time_seconds"] == 9000.0  # first start -> last completion
    assert item["total_lead_time_seconds"] == (t3 - hand.created).total_seconds()
    assert (item["total_work_starts"], item["total_completions"]) == (1, 1)
    assert (item["work_first_started_at"], item["work_last_completed_at"]) == (t1, t3)
    assert (item["total_backlog_returns"], item["workflow_complexity_score"]) == (0, 0)
    assert not item["rework_indicator"]

    flow = {**default_flow(site), "10003": "review"}
    for truth in site.issues():
        metrics, _ = compute_workflow(truth.created, truth_transitions(truth), flow)
        assert metrics_of(items[truth.id]) == metrics.as_row(), truth.key
        assert (items[truth.id]["source_hash"] is None) <= (truth.id in through)
    assert acme.counter.total == 0
    assert await items_of(pool, beta) == beta_before

    # A re-transform of the stored pages under the new mapping agrees with the recompute.
    await retransform(world, "acme")
    again = await items_of(pool, acme)
    assert {k: metrics_of(v) for k, v in again.items()} == {
        k: metrics_of(v) for k, v in items.items()
    }
    assert all(v["source_hash"] is not None for v in again.values())
    assert acme.counter.total == 0


async def test_a_large_status_remap_runs_in_the_background_in_batches(
    make_jira: MakeJira, db_url: str, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_mappings, "INLINE_RECOMPUTE_LIMIT", 5)
    monkeypatch.setattr(mappings, "RECOMPUTE_BATCH", 7)
    world = await build_world(make_jira, db_url, 100, SYNC_STEPS)
    client: Client = await aiohttp_client(create_app(world.daemon))
    acme, pool = world.acme, world.pool
    assert client.app is not None
    tasks = client.app[api_mappings.REMAP_TASKS]
    acme.counter.reset()

    async def remap(mapping: list[dict[str, Any]], flow: dict[str, str]) -> None:
        body = {"integration_id": acme.integration_id, "mappings": mapping}
        resp = await client.put(STATUSES, json=body, headers=world.auth("acme"))
        assert resp.status == 202
        recompute = (await resp.json())["recompute"]
        assert recompute["mode"] == "background"
        assert recompute["items_to_recompute"] > 5
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        items = await items_of(pool, acme)
        for truth in acme.site.issues():
            metrics, _ = compute_workflow(truth.created, truth_transitions(truth), flow)
            assert metrics_of(items[truth.id]) == metrics.as_row(), truth.key

    default = default_flow(acme.site)
    await remap(
        [
            {"status_id": "10003", "flow_category": "review"},
            {"status_id": "10004", "flow_category": "review"},
            {"status_id": "10001", "flow_category": "backlog"},
        ],
        {**default, "10003": "review", "10004": "review", "10001": "backlog"},
    )
    # Back to the Jira defaults: the metrics are what the first sync computed.
    await remap(
        [{"status_id": s, "flow_category": None} for s in ("10003", "10004", "10001")],
        default,
    )
    assert acme.counter.total == 0


# -- through a real daemon -------------------------------------------------------------------


async def wait_run(pool: asyncpg.Pool, run_id: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        async with pool.acquire() as conn:
            run = await conn.fetchrow("SELECT * FROM etl_job_runs WHERE id = $1", run_id)
        if run["outcome"] != "RUNNING":
            return dict(run)
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in time")


async def test_a_daemon_retransform_run_applies_the_mapping_without_api_calls(
    make_config: Callable[..., Config],
    aiohttp_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    site = generate_site(80, SITE_SEED, now=NOW)
    counter = ApiCallCounter()
    fast = FaultPlan(requests_per_second=10_000)
    server = await aiohttp_server(create_jira_app(site, counter=counter, faults=fast))
    key = "k" * 24
    config = make_config(
        workers={"free": {"extraction": 4, "transform": 4, "embedding": 0}},
        pipeline={"job_workers": 1},
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[
            {
                "tenant": "acme",
                "name": "jira-main",
                "provider": "jira",
                "base_url": str(server.make_url("")).rstrip("/"),
                "username": USER,
                "token_env": TOKEN_ENV,
                "allow_private_network": True,
            }
        ],
        security={"internal_auth_key": key},
        scheduler={"enabled": False},
    )
    daemon = Daemon(config, frozenset({"workers", "web"}))
    await daemon.start()
    try:
        pool = daemon.pool
        assert pool is not None
        async with pool.acquire() as conn:
            integration_id = await conn.fetchval("SELECT id FROM integrations")
        base = f"http://127.0.0.1:{daemon.services['web_port']}"
        headers = {"X-Internal-Auth": key}
        async with aiohttp.ClientSession(base_url=base, headers=headers) as http:
            resp = await http.post(
                "/app/etl/custom-fields/sync", json={"integration_id": integration_id}
            )
            assert resp.status == 202
            first = await wait_run(pool, (await resp.json())["run_id"])
            assert first["outcome"] == "FINISHED", first["error"]
            assert counter.total > 0
            counter.reset()

            select = next(cf.id for cf in site.custom_fields if cf.kind == "select")
            body = {"integration_id": integration_id, "custom_field_09": select}
            resp = await http.put("/app/etl/custom-fields/mapping", json=body)
            assert resp.status == 202, await resp.text()
            run_id = (await resp.json())["retransform"]["run_id"]
            again = await wait_run(pool, run_id)
        assert again["outcome"] == "FINISHED", again["error"]
        assert again["trigger"] == "retransform"
        assert again["api_calls"] == 0
        assert counter.total == 0
        async with pool.acquire() as conn:
            items = {
                r["external_id"]: r
                for r in await conn.fetch(
                    "SELECT external_id, custom_field_09, custom_fields_overflow FROM work_items"
                )
            }
        assert len(items) == 80
        for truth in site.issues():
            value = truth.custom_fields.get(select)
            assert items[truth.id]["custom_field_09"] == (value["value"] if value else None)
            assert select not in items[truth.id]["custom_fields_overflow"]
    finally:
        await daemon.shutdown()


def test_an_item_without_a_creation_time_starts_at_its_first_transition() -> None:
    t0 = NOW + timedelta(hours=1)
    rows = [
        {
            "external_id": "2",
            "transition_change_date": t0 + timedelta(hours=3),
            "from_status_id": 2,
            "to_status_id": 3,
        },
        {"external_id": "1", "transition_change_date": t0, "from_status_id": 1, "to_status_id": 2},
        {
            "external_id": "3",
            "transition_change_date": t0 + timedelta(hours=4),
            "from_status_id": 3,
            "to_status_id": None,  # its status row was deleted: the default category
        },
    ]
    flow = {"1": "todo", "2": "in_progress", "3": "review"}
    got = mappings.metrics_from_changelogs(None, rows, flow)
    assert (got.total_work_time_seconds, got.total_review_time_seconds) == (10800.0, 3600.0)
    assert got.work_first_started_at == t0
    assert got.total_backlog_returns == 1  # review -> unknown, counted as todo
