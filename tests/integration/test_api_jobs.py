"""The jobs JSON API against a real PostgreSQL: auth, tenant scoping, actions, errors."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from etld.cli import main as cli_main
from etld.config import Config, parse_config
from etld.daemon import Daemon
from etld.jobs.runs import Runs
from etld.sources.base import RawPage, Source, Step, StepContext, register_source
from etld.store.queries import SQL
from etld.web.app import create_app
from etld.web.auth import new_token, token_hash

INTERNAL_KEY = "internal-test-key"
PROVIDER = "webtest"

# -- shared setup (also used by test_ws.py) ----------------------------------------------


class _Step(Step):
    name = "web_step"
    display_name = "Web step"

    async def extract(self, ctx: StepContext, message: dict[str, Any], out: Any) -> None:
        return None

    async def transform(self, ctx: StepContext, page: RawPage, out: Any) -> int:
        return 0


class _Source(Source):
    provider = PROVIDER

    def steps(self, job_config: dict[str, Any]) -> Sequence[Step]:
        return [_Step()]


register_source(PROVIDER, _Source)


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def publish(
        self, queue: str, message: dict[str, Any], *, headers: dict[str, Any] | None = None
    ) -> None:
        self.published.append((queue, message))


@dataclass
class World:
    daemon: Daemon
    runs: Runs
    publisher: RecordingPublisher
    tenants: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        if who == "service":
            return {"X-Internal-Auth": INTERNAL_KEY}
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def add_token(pool: asyncpg.Pool, tenant_id: int, name: str, role: str) -> str:
    token = new_token()
    async with pool.acquire() as conn:
        await conn.fetchval(SQL["auth.insert_token"], tenant_id, name, token_hash(token), role)
    return token


async def add_job(pool: asyncpg.Pool, tenant_id: int, name: str, order: int = 1) -> int:
    async with pool.acquire() as conn:
        integration_id = await conn.fetchval(
            SQL["seed.upsert_integration"], tenant_id, name, PROVIDER, None, None, {}, False, True
        )
        return int(
            await conn.fetchval(SQL["seed.ensure_job"], tenant_id, integration_id, name, "x", order)
        )


async def build_world(pool: asyncpg.Pool, config: Config) -> World:
    """Tenants alpha and beta, one job each, an admin token each and a viewer of alpha."""
    daemon = Daemon(config)
    daemon.pool = pool
    publisher = RecordingPublisher()
    runs = Runs(pool, publisher, config)
    daemon.services["runs"] = runs
    world = World(daemon, runs, publisher)
    for name in ("alpha", "beta"):
        async with pool.acquire() as conn:
            await conn.fetchval(SQL["seed.upsert_tenant"], name, "free", True)
            tenant_id = int(await conn.fetchval(SQL["seed.tenant_id_by_name"], name))
        world.tenants[name] = tenant_id
        world.jobs[name] = await add_job(pool, tenant_id, f"{name}-job")
        world.tokens[name] = await add_token(pool, tenant_id, f"{name}-admin", "admin")
    world.tokens["viewer"] = await add_token(pool, world.tenants["alpha"], "watcher", "viewer")
    return world


def web_config(db_url: str, **sections: dict[str, Any]) -> Config:
    """A config on the test's database. The web app needs no broker, so none is set up."""
    raw: dict[str, Any] = {
        "database": {"url": db_url, "min_connections": 1, "max_connections": 5},
        "web": {"port": 0},
        "security": {"internal_auth_key": INTERNAL_KEY},
        "daemon": {"grace_period": 5.0, "connect_timeout": 5.0},
        "logging": {"level": "warning", "format": "console"},
        "embeddings": {"enabled": False},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def world(pool: asyncpg.Pool, db_url: str) -> World:
    return await build_world(pool, web_config(db_url, web={"max_body_bytes": 1024}))


@pytest.fixture
async def client(
    world: World, aiohttp_client: AiohttpClient
) -> TestClient[web.Request, web.Application]:
    return await aiohttp_client(create_app(world.daemon))


def job_routes(job_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/app/etl/jobs/{job_id}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"active": False}),
        ("POST", f"{base}/run", {}),
        ("PUT", f"{base}/status", {"status": "READY"}),
        ("GET", f"{base}/runs", None),
    ]


async def run_row(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await conn.fetchrow(SQL["jobs.get_run"], run_id)


# -- auth and scoping ----------------------------------------------------------------------


async def test_every_route_rejects_anonymous_and_bad_credentials(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    routes = [
        *job_routes(world.jobs["alpha"]),
        ("GET", "/app/etl/jobs?tenant_id=1", None),
        ("GET", "/app/etl/notifications?tenant_id=1", None),
    ]
    bad = [
        {},
        {"Authorization": "Bearer etld_not-a-real-token"},
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"X-Internal-Auth": "wrong"},
    ]
    for method, path, body in routes:
        for headers in bad:
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status == 401, (method, path, headers)
            assert (await resp.json())["error"]["code"] == "unauthorized"
    # A token is not accepted from the query string outside WebSocket handshakes.
    resp = await client.get(f"/app/etl/jobs?token={world.tokens['alpha']}")
    assert resp.status == 401


async def test_every_route_hides_other_tenants_rows(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    beta = world.auth("beta")
    for method, path, body in job_routes(world.jobs["alpha"]):
        resp = await client.request(method, path, json=body, headers=beta)
        assert resp.status == 404, (method, path)
        assert (await resp.json())["error"]["code"] == "not_found"
    alpha_id = world.tenants["alpha"]
    for path in ("/app/etl/jobs", "/app/etl/notifications"):
        resp = await client.get(f"{path}?tenant_id={alpha_id}", headers=beta)
        assert resp.status == 404, path
    # Unknown job ids look exactly the same.
    resp = await client.get("/app/etl/jobs/999999", headers=beta)
    assert resp.status == 404
    # Nothing was changed by the refused actions.
    async with world.daemon.pool.acquire() as conn:  # type: ignore[union-attr]
        job = await conn.fetchrow(SQL["jobs.get"], world.jobs["alpha"])
    assert job["active"] is True
    assert world.publisher.published == []


async def test_tenant_token_lists_its_own_jobs(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    resp = await client.get("/app/etl/jobs", headers=world.auth("alpha"))
    assert resp.status == 200
    data = await resp.json()
    assert data["tenant_id"] == world.tenants["alpha"]
    assert [j["id"] for j in data["jobs"]] == [world.jobs["alpha"]]
    job = data["jobs"][0]
    assert job["status"]["overall"] == "READY"
    assert job["active"] is True
    assert job["integration"]["provider"] == PROVIDER
    assert job["last_run"] is None
    assert {"next_run", "last_sync_date"} <= set(job)


async def test_service_key_names_the_tenant(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    service = world.auth("service")
    beta_id = world.tenants["beta"]
    resp = await client.get(f"/app/etl/jobs?tenant_id={beta_id}", headers=service)
    assert resp.status == 200
    assert [j["id"] for j in (await resp.json())["jobs"]] == [world.jobs["beta"]]
    resp = await client.get("/app/etl/jobs", headers=service)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"
    resp = await client.get("/app/etl/jobs?tenant_id=424242", headers=service)
    assert resp.status == 404
    resp = await client.get(f"/app/etl/jobs/{world.jobs['alpha']}", headers=service)
    assert resp.status == 200
    assert (await resp.json())["tenant_id"] == world.tenants["alpha"]


async def test_service_key_disabled_when_not_configured(
    pool: asyncpg.Pool, db_url: str, aiohttp_client: Any
) -> None:
    world = await build_world(pool, web_config(db_url, security={"internal_auth_key": ""}))
    client = await aiohttp_client(create_app(world.daemon))
    resp = await client.get("/app/etl/jobs?tenant_id=1", headers={"X-Internal-Auth": ""})
    assert resp.status == 401


async def test_viewer_may_read_but_not_act(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    viewer = world.auth("viewer")
    job_id = world.jobs["alpha"]
    assert (await client.get(f"/app/etl/jobs/{job_id}", headers=viewer)).status == 200
    assert (await client.get(f"/app/etl/jobs/{job_id}/runs", headers=viewer)).status == 200
    for method, path, body in job_routes(job_id):
        if method == "GET":
            continue
        resp = await client.request(method, path, json=body, headers=viewer)
        assert resp.status == 403, (method, path)
        assert (await resp.json())["error"]["code"] == "forbidden"
    assert world.publisher.published == []


async def test_revoked_token_is_refused_and_use_is_recorded(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    pool = world.daemon.pool
    assert pool is not None
    assert (await client.get("/app/etl/jobs", headers=world.auth("alpha"))).status == 200
    async with pool.acquire() as conn:
        tokens = {r["name"]: r for r in await conn.fetch(SQL["auth.list_tokens"], "alpha")}
        assert tokens["alpha-admin"]["last_used_at"] is not None
        assert tokens["watcher"]["last_used_at"] is None
        await conn.fetchrow(SQL["auth.revoke_token"], tokens["alpha-admin"]["id"])
    assert (await client.get("/app/etl/jobs", headers=world.auth("alpha"))).status == 401


# -- actions -------------------------------------------------------------------------------


async def test_run_now_starts_a_run_then_conflicts(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    job_id = world.jobs["alpha"]
    resp = await client.post(
        f"/app/etl/jobs/{job_id}/run", json={"full_sync": True}, headers=world.auth("alpha")
    )
    assert resp.status == 202
    data = await resp.json()
    assert data["outcome"] == "started"
    run = await run_row(world.runs.pool, data["run_id"])
    assert run["outcome"] == "RUNNING"
    assert run["job_id"] == job_id
    assert run["trigger"] == "manual"
    assert run["full_sync"] is True
    assert [q for q, _ in world.publisher.published] == ["etl.jobs"]
    assert world.publisher.published[0][1]["run_id"] == data["run_id"]

    resp = await client.post(f"/app/etl/jobs/{job_id}/run", headers=world.auth("service"))
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "conflict"

    resp = await client.post(
        f"/app/etl/jobs/{job_id}/run", json={"full_sync": "yes"}, headers=world.auth("alpha")
    )
    assert resp.status == 422


async def test_reset_status_ends_the_running_run(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    job_id, auth = world.jobs["alpha"], world.auth("alpha")
    status_path = f"/app/etl/jobs/{job_id}/status"
    started = await client.post(f"/app/etl/jobs/{job_id}/run", headers=auth)
    run_id = (await started.json())["run_id"]
    resp = await client.put(status_path, json={"status": "BOGUS"}, headers=auth)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "invalid"

    resp = await client.put(status_path, json={"status": "READY"}, headers=auth)
    assert resp.status == 200
    job = await resp.json()
    assert job["status"]["overall"] == "READY"
    assert datetime.fromisoformat(job["next_run"])  # due again now
    run = await run_row(world.runs.pool, run_id)
    assert run["outcome"] == "FAILED"
    assert run["error"] == "reset by user"
    assert job["last_run"]["outcome"] == "FAILED"

    resp = await client.put(
        f"/app/etl/jobs/{job_id}/status", json={"status": "NOT_STARTED"}, headers=auth
    )
    assert resp.status == 200
    job = await resp.json()
    assert job["status"]["overall"] == "NOT_STARTED"
    assert job["next_run"] is None


async def test_pause_and_resume(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    path, auth = f"/app/etl/jobs/{world.jobs['alpha']}", world.auth("alpha")
    resp = await client.patch(path, json={"active": False}, headers=auth)
    assert resp.status == 200
    assert (await resp.json())["active"] is False
    assert (await (await client.get(path, headers=auth)).json())["active"] is False
    resp = await client.patch(path, json={"active": True}, headers=auth)
    assert (await resp.json())["active"] is True
    for bad in ({"active": "no"}, {"active": True, "name": "x"}, {}):
        assert (await client.patch(path, json=bad, headers=auth)).status == 422


async def test_runs_history_and_notifications(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    job_id, auth = world.jobs["alpha"], world.auth("alpha")
    for _ in range(2):
        assert (await client.post(f"/app/etl/jobs/{job_id}/run", headers=auth)).status == 202
        await client.put(f"/app/etl/jobs/{job_id}/status", json={"status": "READY"}, headers=auth)
    resp = await client.get(f"/app/etl/jobs/{job_id}/runs?limit=1", headers=auth)
    assert resp.status == 200
    data = await resp.json()
    assert (data["limit"], data["offset"]) == (1, 0)
    (run,) = data["runs"]
    expected = {
        "id", "trigger", "full_sync", "outcome", "started_at", "finished_at",
        "duration_seconds", "records", "api_calls", "dead_letters", "errors",
        "peak_memory_bytes", "error", "alert",
    }  # fmt: skip
    assert set(run) == expected
    assert run["outcome"] == "FAILED"
    assert run["error"] == "reset by user"
    assert isinstance(run["duration_seconds"], float)
    assert datetime.fromisoformat(run["finished_at"]) >= datetime.fromisoformat(run["started_at"])
    resp = await client.get(f"/app/etl/jobs/{job_id}/runs?limit=5&offset=1", headers=auth)
    assert len((await resp.json())["runs"]) == 1
    for query in ("limit=0", "limit=201", "limit=abc", "offset=-1"):
        resp = await client.get(f"/app/etl/jobs/{job_id}/runs?{query}", headers=auth)
        assert resp.status == 400, query

    resp = await client.get("/app/etl/notifications?limit=10", headers=auth)
    assert resp.status == 200
    notes = (await resp.json())["notifications"]
    assert len(notes) == 2
    assert {n["kind"] for n in notes} == {"run_failed"}
    assert all(n["job_id"] == job_id for n in notes)
    assert datetime.fromisoformat(notes[0]["created_at"])
    resp = await client.get("/app/etl/notifications", headers=world.auth("beta"))
    assert (await resp.json())["notifications"] == []


# -- errors ----------------------------------------------------------------------------------


async def test_errors_are_json_without_internals(
    world: World, client: TestClient[web.Request, web.Application]
) -> None:
    auth, job_id = world.auth("alpha"), world.jobs["alpha"]
    resp = await client.get("/app/etl/nothing-here", headers=auth)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.delete(f"/app/etl/jobs/{job_id}", headers=auth)
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    resp = await client.put(f"/app/etl/jobs/{job_id}/status", data=b"{nope", headers=auth)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"
    resp = await client.put(f"/app/etl/jobs/{job_id}/status", data=b"x" * 4096, headers=auth)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    # Something unexpected: the handler breaks (no run service registered).
    del world.daemon.services["runs"]
    resp = await client.post(f"/app/etl/jobs/{job_id}/run", headers=auth)
    assert resp.status == 500
    body = await resp.text()
    assert '"code":"internal"' in body
    assert "Traceback" not in body
    assert "KeyError" not in body


# -- CLI -----------------------------------------------------------------------------------


async def test_tokens_cli_add_use_list_revoke(
    world: World,
    client: TestClient[web.Request, web.Application],
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "etld.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[logging]\nlevel = "warning"\n')

    def etld(*argv: str) -> tuple[int, str]:
        code = cli_main(["--config", str(config), *argv])
        return code, capsys.readouterr().out

    code, out = await asyncio.to_thread(
        etld, "tokens", "add", "--tenant", "alpha", "--name", "ci", "--role", "admin"
    )
    assert code == 0
    token = re.search(r"^token: (\S+)$", out, re.MULTILINE)
    assert token is not None
    token_id = int(re.search(r"^token (\d+) ", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    assert (await client.get("/app/etl/jobs", headers=headers)).status == 200

    code, out = await asyncio.to_thread(etld, "tokens", "list", "--tenant", "alpha")
    assert code == 0
    assert "ci" in out
    assert token.group(1) not in out

    code, _ = await asyncio.to_thread(etld, "tokens", "revoke", str(token_id))
    assert code == 0
    assert (await client.get("/app/etl/jobs", headers=headers)).status == 401
    code, _ = await asyncio.to_thread(etld, "tokens", "revoke", "999999")
    assert code == 1
    code, _ = await asyncio.to_thread(etld, "tokens", "add", "--tenant", "nobody", "--name", "x")
    assert code == 1
