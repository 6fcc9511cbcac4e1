"""The mappings API against a real PostgreSQL and the Jira simulator: custom fields, the
custom field mapping and its validation, the custom fields sync, status mappings, auth
and tenant scoping. Two tenants sync the same simulated site, so their fields and statuses
carry the same Jira ids and only the tenant tells them apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from etld.daemon import Daemon
from etld.jobs.runs import Runs
from etld.mappings import SLOTS
from etld.sources.jira.transform_issues import SLOTS as TRANSFORM_SLOTS
from etld.store.queries import SQL
from etld.web.app import create_app
from tests.integration.test_api_jobs import RecordingPublisher, add_token, web_config
from tests.integration.test_jira_support import (
    Jira,
    MakeJira,
    jira_factory,
    quiet_logs,  # noqa: F401
)

CF_STEP = "jira_custom_fields"
META_STEPS = ("jira_projects_and_issue_types", "jira_statuses_and_relationships")
ISSUES_STEP = "jira_issues_with_changelogs"
Client = TestClient[web.Request, web.Application]


@dataclass
class World:
    acme: Jira
    beta: Jira
    daemon: Daemon
    runs: Runs
    publisher: RecordingPublisher
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # tenant -> sync result
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.acme.pool

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def second_tenant(jira: Jira, name: str) -> Jira:
    """Another tenant with its own Jira integration on the same simulated site."""
    async with jira.pool.acquire() as conn:
        tenant_id = await conn.fetchval(SQL["seed.upsert_tenant"], name, "free", True)
        row = await conn.fetchrow(
            "SELECT username, settings FROM integrations WHERE id = $1", jira.integration_id
        )
        integration_id = await conn.fetchval(
            SQL["seed.upsert_integration"],
            tenant_id,
            "jira",
            "jira",
            jira.base_url,
            row["username"],
            row["settings"],
            True,
            True,
        )
        job_id = await conn.fetchval(
            SQL["seed.ensure_job"], tenant_id, integration_id, "jira-sync", "jira_sync", 1
        )
    return Jira(
        jira.pool,
        jira.config,
        jira.site,
        jira.counter,
        jira.server,
        tenant_id,
        integration_id,
        job_id,
    )


async def finish_runs(pool: asyncpg.Pool) -> None:
    """End every running run, as a finished job would, so the next one may start."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE etl_job_runs SET outcome = 'FINISHED', finished_at = now() "
            "WHERE outcome = 'RUNNING'"
        )


async def build_world(
    make_jira: MakeJira, db_url: str, issues: int, steps: Sequence[str], **site: Any
) -> World:
    acme = await make_jira(issues, **site)
    beta = await second_tenant(acme, "beta")
    results = {}
    for name, jira in (("acme", acme), ("beta", beta)):
        run = await jira.new_run(full_sync=True, config={"custom_fields_sync": True})
        results[name] = await jira.sync(run, steps)
    await finish_runs(acme.pool)
    daemon = Daemon(web_config(db_url))
    daemon.pool = acme.pool
    publisher = RecordingPublisher()
    runs = Runs(acme.pool, publisher, daemon.config)
    daemon.services["runs"] = runs
    world = World(acme, beta, daemon, runs, publisher, results)
    world.tokens["acme"] = await add_token(acme.pool, acme.tenant_id, "acme-admin", "admin")
    world.tokens["beta"] = await add_token(acme.pool, beta.tenant_id, "beta-admin", "admin")
    world.tokens["viewer"] = await add_token(acme.pool, acme.tenant_id, "acme-viewer", "viewer")
    return world


async def field_ids(pool: asyncpg.Pool, jira: Jira) -> dict[str, int]:
    """External id -> custom_fields.id of one tenant's integration."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, external_id FROM custom_fields WHERE integration_id = $1",
            jira.integration_id,
        )
    return {r["external_id"]: r["id"] for r in rows}


def field_of(jira: Jira, kind: str) -> str:
    return next(cf.id for cf in jira.site.custom_fields if cf.kind == kind)


@pytest.fixture
def make_jira(pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> MakeJira:
    return jira_factory(pool, aiohttp_server, monkeypatch)


@pytest.fixture
async def world(make_jira: MakeJira, db_url: str) -> World:
    return await build_world(make_jira, db_url, 40, [CF_STEP, *META_STEPS])


@pytest.fixture
async def client(world: World, aiohttp_client: Any) -> Client:
    made: Client = await aiohttp_client(create_app(world.daemon))
    return made


def routes(integration_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    q = f"?integration_id={integration_id}"
    body = {"integration_id": integration_id}
    return [
        ("GET", f"/app/etl/custom-fields{q}", None),
        ("POST", "/app/etl/custom-fields/sync", body),
        ("GET", f"/app/etl/custom-fields/mapping{q}", None),
        ("PUT", "/app/etl/custom-fields/mapping", {**body, "team": None}),
        ("GET", f"/app/etl/status-mappings{q}", None),
        (
            "PUT",
            "/app/etl/status-mappings",
            {**body, "mappings": [{"status_id": "10003", "flow_category": "review"}]},
        ),
    ]


async def mapping_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM custom_fields_mapping")]


# -- auth and scoping ----------------------------------------------------------------------


async def test_routes_refuse_anonymous_viewers_and_other_tenants(
    world: World, client: Client
) -> None:
    acme_id = world.acme.integration_id
    for method, path, body in routes(acme_id):
        resp = await client.request(method, path, json=body)
        assert resp.status == 401, (method, path)
        resp = await client.request(method, path, json=body, headers=world.auth("beta"))
        assert resp.status == 404, (method, path)
        assert (await resp.json())["error"] == {
            "code": "not_found",
            "message": "no such integration",
        }
        resp = await client.request(method, path, json=body, headers=world.auth("viewer"))
        assert resp.status == (200 if method == "GET" else 403), (method, path)
    for method, path, body in routes(987654):
        resp = await client.request(method, path, json=body, headers=world.auth("acme"))
        assert resp.status == 404, (method, path)
    resp = await client.get("/app/etl/custom-fields", headers=world.auth("acme"))
    assert resp.status == 400
    resp = await client.get("/app/etl/status-mappings?integration_id=x", headers=world.auth("acme"))
    assert resp.status == 400
    # Nothing was changed or started by the refused requests.
    assert world.publisher.published == []
    assert await mapping_rows(world.pool) == []
    async with world.pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM status_mappings WHERE source = 'user'") == 0
        )


# -- custom fields and their mapping ---------------------------------------------------------


def test_the_slot_allow_list_matches_the_transform() -> None:
    assert set(SLOTS) == set(TRANSFORM_SLOTS)
    assert SLOTS[:3] == ("team", "code_changed", "story_points")
    assert SLOTS[3:] == tuple(f"custom_field_{i:02d}" for i in range(1, 21))


async def test_fields_are_listed_with_the_slot_that_maps_them(world: World, client: Client) -> None:
    acme, auth = world.acme, world.auth("acme")
    resp = await client.get(
        f"/app/etl/custom-fields?integration_id={acme.integration_id}", headers=auth
    )
    assert resp.status == 200
    data = await resp.json()
    assert data["integration_id"] == acme.integration_id
    listed = {f["external_id"]: f for f in data["fields"]}
    # The site's fields, plus Jira's own "Development" field the site serves too.
    assert {k: (f["name"], f["field_type"]) for k, f in listed.items()}.items() >= {
        cf.id: (cf.name, cf.schema["type"]) for cf in acme.site.custom_fields
    }.items()
    assert all(f["slot"] is None for f in listed.values())
    assert all(listed[cf.id]["operations"] for cf in acme.site.custom_fields)
    ids = await field_ids(world.pool, acme)
    assert {f["id"] for f in listed.values()} == set(ids.values())  # this tenant's rows only

    points, select = field_of(acme, "story_points"), field_of(acme, "select")
    body = {
        "integration_id": acme.integration_id,
        "story_points": points,
        "custom_field_07": ids[select],
        "apply": False,
    }
    resp = await client.put("/app/etl/custom-fields/mapping", json=body, headers=auth)
    assert resp.status == 200, await resp.text()
    resp = await client.get(
        f"/app/etl/custom-fields?integration_id={acme.integration_id}", headers=auth
    )
    slots = {f["external_id"]: f["slot"] for f in (await resp.json())["fields"] if f["slot"]}
    assert slots == {points: "story_points", select: "custom_field_07"}


async def test_invalid_mappings_are_refused_with_clear_reasons(
    world: World, client: Client
) -> None:
    acme, auth = world.acme, world.auth("acme")
    path = "/app/etl/custom-fields/mapping"
    base = {"integration_id": acme.integration_id, "apply": False}
    team, select = field_of(acme, "team"), field_of(acme, "select")
    acme_ids = await field_ids(world.pool, acme)
    beta_ids = await field_ids(world.pool, world.beta)

    async def refused(body: dict[str, Any]) -> str:
        resp = await client.put(path, json={**base, **body}, headers=auth)
        assert resp.status == 422, body
        error = (await resp.json())["error"]
        assert error["code"] == "invalid"
        return str(error["message"])

    # One field in two slots, named once by external id and once by id.
    message = await refused({"team": team, "custom_field_03": acme_ids[team]})
    assert f"custom field {team} (Team) is mapped to both team and custom_field_03" in message
    message = await refused({"custom_field_01": "customfield_99999"})
    assert message == "unknown custom field customfield_99999 for integration jira"
    # The other tenant's field: same Jira id, but its row is not this integration's.
    message = await refused({"custom_field_01": beta_ids[select]})
    assert message == f"unknown custom field {beta_ids[select]} for integration jira"
    message = await refused({"custom_field_21": select})
    assert message.startswith("unknown slot(s): custom_field_21;")
    assert "story_points" in message
    assert "custom_field_20" in message
    message = await refused({"Team": team, "custom_field_01_id": acme_ids[select]})
    assert "unknown slot(s): Team, custom_field_01_id" in message
    message = await refused({"team": True})
    assert message == "team must be a custom field id, an external id or null"
    # Every problem is named at once.
    message = await refused({"team": "customfield_1", "story_points": "customfield_2"})
    assert "customfield_1" in message
    assert "customfield_2" in message
    resp = await client.put(path, json={**base, "apply": "yes"}, headers=auth)
    assert resp.status == 422
    resp = await client.put(path, json={"team": team}, headers=auth)
    assert resp.status == 422
    assert (await resp.json())["error"]["message"] == "integration_id is required"
    resp = await client.put(path, data=b"[1]", headers=auth)
    assert resp.status == 400

    assert await mapping_rows(world.pool) == []
    resp = await client.get(f"{path}?integration_id={acme.integration_id}", headers=auth)
    data = await resp.json()
    assert data["configured"] is False
    assert data["mapping"] == dict.fromkeys(SLOTS)


async def test_saving_a_mapping_starts_a_retransform_and_replaces_the_row(
    world: World, client: Client
) -> None:
    acme, auth = world.acme, world.auth("acme")
    path = "/app/etl/custom-fields/mapping"
    ids = await field_ids(world.pool, acme)
    points, team, value = (field_of(acme, k) for k in ("story_points", "team", "float"))
    body = {
        "integration_id": acme.integration_id,
        "story_points": ids[points],  # by id
        "team": team,  # by external id
        "custom_field_20": value,
        "code_changed": None,
    }
    resp = await client.put(path, json=body, headers=auth)
    assert resp.status == 202, await resp.text()
    data = await resp.json()
    assert data["warnings"] == []
    assert data["mapping"]["story_points"]["external_id"] == points
    assert data["mapping"]["team"] == {
        "id": ids[team],
        "external_id": team,
        "name": "Team",
        "field_type": "team",
    }
    assert data["mapping"]["custom_field_20"]["id"] == ids[value]
    assert data["mapping"]["custom_field_01"] is None
    retransform = data["retransform"]
    assert retransform["outcome"] == "started"
    async with world.pool.acquire() as conn:
        run = await conn.fetchrow(
            "SELECT trigger, config, outcome, job_id FROM etl_job_runs WHERE id = $1",
            retransform["run_id"],
        )
    assert (run["trigger"], run["config"], run["outcome"]) == (
        "retransform",
        {"retransform": True},
        "RUNNING",
    )
    assert run["job_id"] == acme.job_id == retransform["job_id"]
    ((queue, message),) = world.publisher.published
    assert queue == "etl.jobs"
    assert message["config"]["retransform"] is True
    (row,) = await mapping_rows(world.pool)
    assert (row["tenant_id"], row["integration_id"]) == (acme.tenant_id, acme.integration_id)
    assert (row["story_points_field_id"], row["team_field_id"]) == (ids[points], ids[team])
    assert row["custom_field_20_id"] == ids[value]
    assert row["active"] is True

    # While the job runs, a change is refused and the mapping stays as it was.
    resp = await client.put(path, json={**body, "team": None}, headers=auth)
    assert resp.status == 409
    assert "is running; the mapping was not changed" in (await resp.json())["error"]["message"]
    assert (await mapping_rows(world.pool))[0]["team_field_id"] == ids[team]

    # apply=false saves without a run; slots left out are emptied; still one row.
    story = field_of(acme, "text")
    only = {"integration_id": acme.integration_id, "story_points": story, "apply": False}
    resp = await client.put(path, json=only, headers=auth)
    assert resp.status == 200
    data = await resp.json()
    assert data["retransform"] is None
    assert data["warnings"] == [
        f"story_points expects a number field; {story} is string, so values that are not "
        "numbers will be empty"
    ]
    (row,) = await mapping_rows(world.pool)
    assert row["story_points_field_id"] == ids[story]
    assert row["team_field_id"] is None
    assert row["custom_field_20_id"] is None
    assert len(world.publisher.published) == 1
    resp = await client.get(f"{path}?integration_id={acme.integration_id}", headers=auth)
    data = await resp.json()
    assert data["configured"] is True
    assert [s for s, f in data["mapping"].items() if f] == ["story_points"]

    # The other tenant may map its own fields independently: a second row.
    beta_ids = await field_ids(world.pool, world.beta)
    resp = await client.put(
        path,
        json={"integration_id": world.beta.integration_id, "story_points": points, "apply": False},
        headers=world.auth("beta"),
    )
    assert resp.status == 200
    rows = {r["tenant_id"]: r for r in await mapping_rows(world.pool)}
    assert rows[world.beta.tenant_id]["story_points_field_id"] == beta_ids[points]
    assert rows[acme.tenant_id]["story_points_field_id"] == ids[story]


async def test_the_custom_fields_sync_runs_the_discovery_step(world: World, client: Client) -> None:
    acme, auth = world.acme, world.auth("acme")
    path = "/app/etl/custom-fields/sync"
    resp = await client.post(path, json={"integration_id": acme.integration_id}, headers=auth)
    assert resp.status == 202
    data = await resp.json()
    assert data["outcome"] == "started"
    assert data["job_id"] == acme.job_id
    async with world.pool.acquire() as conn:
        run = await conn.fetchrow(
            "SELECT trigger, config, steps FROM etl_job_runs WHERE id = $1", data["run_id"]
        )
    assert run["trigger"] == "manual"
    assert run["config"] == {"custom_fields_sync": True}
    assert run["steps"][0]["name"] == CF_STEP
    assert world.publisher.published[0][1]["config"]["custom_fields_sync"] is True

    resp = await client.post(path, json={"integration_id": acme.integration_id}, headers=auth)
    assert resp.status == 409
    assert "already running" in (await resp.json())["error"]["message"]
    for bad in ({}, {"integration_id": "1"}, {"integration_id": acme.integration_id, "x": 1}):
        resp = await client.post(path, json=bad, headers=auth)
        assert resp.status == 422, bad
    assert len(world.publisher.published) == 1


# -- status mappings ---------------------------------------------------------------------------


async def test_status_mappings_are_listed_validated_and_saved(world: World, client: Client) -> None:
    acme, auth = world.acme, world.auth("acme")
    path = "/app/etl/status-mappings"
    resp = await client.get(f"{path}?integration_id={acme.integration_id}", headers=auth)
    assert resp.status == 200
    statuses = {s["external_id"]: s for s in (await resp.json())["statuses"]}
    assert {k: (s["name"], s["jira_category"]) for k, s in statuses.items()} == {
        s.id: (s.name, s.category.key) for s in acme.site.statuses
    }
    review = statuses["10003"]
    assert (review["name"], review["flow_category"], review["source"]) == (
        "In Review",
        "in_progress",
        "default",
    )
    async with world.pool.acquire() as conn:
        beta_review = await conn.fetchval(
            "SELECT id FROM statuses WHERE tenant_id = $1 AND external_id = '10003'",
            world.beta.tenant_id,
        )

    async def refused(mappings: Any) -> str:
        body = {"integration_id": acme.integration_id, "mappings": mappings}
        resp = await client.put(path, json=body, headers=auth)
        assert resp.status == 422, mappings
        return str((await resp.json())["error"]["message"])

    message = await refused([{"status_id": review["status_id"], "flow_category": "testing"}])
    assert message.startswith("flow_category of status In Review must be one of backlog, todo,")
    assert await refused([{"status_id": beta_review, "flow_category": "review"}]) == (
        f"unknown status {beta_review} for integration jira"
    )
    assert await refused([{"status_id": "99999", "flow_category": "done"}]) == (
        "unknown status 99999 for integration jira"
    )
    twice = [{"status_id": "10003", "flow_category": "review"}] * 2
    assert await refused(twice) == "status In Review is listed more than once"
    assert (await refused([])).startswith("mappings must be a non-empty list")
    assert (await refused([{"status": "10003"}])).startswith("mappings[0] must be an object")

    body = {
        "integration_id": acme.integration_id,
        "mappings": [
            {"status_id": review["status_id"], "flow_category": "review"},
            {"status_id": "10001", "flow_category": "backlog"},
        ],
    }
    resp = await client.put(path, json=body, headers=auth)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["recompute"]["mode"] == "inline"
    assert (data["recompute"]["statuses_changed"], data["recompute"]["statuses_moved"]) == (2, 2)
    after = {s["external_id"]: s for s in data["statuses"]}
    assert (after["10003"]["flow_category"], after["10003"]["source"]) == ("review", "user")
    assert (after["10001"]["flow_category"], after["10001"]["source"]) == ("backlog", "user")
    assert after["3"]["source"] == "default"
    # The other tenant's statuses are untouched.
    resp = await client.get(
        f"{path}?integration_id={world.beta.integration_id}", headers=world.auth("beta")
    )
    assert all(s["source"] == "default" for s in (await resp.json())["statuses"])

    # null hands a status back to its Jira category.
    body = {"integration_id": acme.integration_id, "mappings": [{"status_id": "10003"}]}
    assert (await client.put(path, json=body, headers=auth)).status == 422
    body["mappings"] = [{"status_id": "10003", "flow_category": None}]
    resp = await client.put(path, json=body, headers=auth)
    assert resp.status == 200
    after = {s["external_id"]: s for s in (await resp.json())["statuses"]}
    assert (after["10003"]["flow_category"], after["10003"]["source"]) == (
        "in_progress",
        "default",
    )
