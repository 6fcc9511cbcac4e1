"""The admin UI's server side against a real PostgreSQL: sessions, CSRF, login throttling,
tenant scoping of every id route, body limits, the OpenAPI document, the new JSON routes
(integrations, work items) and the pages' framing (redirects, error pages, banner)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from etld import dlq
from etld.passwords import hash_password
from etld.simulator import create_jira_app, generate_site
from etld.store.queries import SQL
from etld.web.app import create_app
from etld.web.openapi import api_routes
from etld.web.ratelimit import FailureLimiter
from etld.web.sessions import COOKIE
from tests.integration.test_api_jobs import World, build_world, web_config

Client = TestClient[web.Request, web.Application]
SECRET = "a-test-secret-key-of-some-length"
PASSWORD = "correct horse battery"
MAX_BODY = 2048


@dataclass
class Ui:
    world: World
    client: Client
    users: dict[str, int]
    integration: dict[str, int]
    dead: dict[str, int]
    item: dict[str, int]


@dataclass
class Login:
    cookie: str  # the session cookie value
    csrf: str

    def headers(self, *, csrf: bool = False) -> dict[str, str]:
        out = {"Cookie": f"{COOKIE}={self.cookie}"}
        if csrf:
            out["X-CSRF-Token"] = self.csrf
        return out


def csrf_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]*)"', html)
    assert match, html[:500]
    return match.group(1)


def session_cookie_of(response: aiohttp.ClientResponse) -> str | None:
    morsel = response.cookies.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


async def login(client: Client, username: str, password: str = PASSWORD) -> Login:
    form_page = await client.get("/login")
    anon = session_cookie_of(form_page)
    assert anon is not None
    answer = await client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": csrf_of(await form_page.text()),
        },
        headers={"Cookie": f"{COOKIE}={anon}"},
        allow_redirects=False,
    )
    assert answer.status == 303, await answer.text()
    cookie = session_cookie_of(answer)
    assert cookie is not None
    page = await client.get("/", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert page.status == 200
    return Login(cookie, csrf_of(await page.text()))


async def add_user(pool: asyncpg.Pool, tenant_id: int, name: str, role: str) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                SQL["users.insert_user"], tenant_id, name, None, hash_password(PASSWORD), role
            )
        )


async def add_work_item(pool: asyncpg.Pool, tenant_id: int, integration_id: int, key: str) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "INSERT INTO work_items (tenant_id, integration_id, external_id, key, summary,"
                " custom_field_03, updated) VALUES ($1, $2, $3, $4, $5, $6, now()) RETURNING id",
                tenant_id,
                integration_id,
                key,
                key,
                f"summary of {key}",
                f"value-{key}",
            )
        )


@pytest.fixture
async def ui(pool: asyncpg.Pool, db_url: str, aiohttp_client: Any) -> Ui:
    config = web_config(
        db_url,
        web={"max_body_bytes": MAX_BODY, "session_max_age": 3600},
        security={"secret_key": SECRET},
    )
    world = await build_world(pool, config)
    users, integration, dead, item = {}, {}, {}, {}
    for tenant in ("alpha", "beta"):
        tenant_id = world.tenants[tenant]
        users[tenant] = await add_user(pool, tenant_id, f"{tenant}-admin", "admin")
        async with pool.acquire() as conn:
            integration[tenant] = await conn.fetchval(
                "SELECT integration_id FROM etl_jobs WHERE id = $1", world.jobs[tenant]
            )
        dead[tenant] = await dlq.record(
            pool,
            dlq.NewDeadLetter(
                queue="extraction_queue_free", reason="boom", body=b"{}", tenant_id=tenant_id
            ),
        )
        item[tenant] = await add_work_item(
            pool, tenant_id, integration[tenant], f"{tenant.upper()}-1"
        )
    users["viewer"] = await add_user(pool, world.tenants["alpha"], "alpha-viewer", "viewer")
    client = await aiohttp_client(create_app(world.daemon), cookie_jar=aiohttp.DummyCookieJar())
    return Ui(world, client, users, integration, dead, item)


def concrete(path: str, ids: dict[str, int]) -> str:
    """The path with its parameters filled in (1 for a parameter `ids` does not name)."""
    return re.sub(r"{([a-z_]+)}", lambda m: str(ids.get(m.group(1), 1)), path)


def beta_ids(ui: Ui) -> dict[str, int]:
    return {
        "job_id": ui.world.jobs["beta"],
        "dead_id": ui.dead["beta"],
        "integration_id": ui.integration["beta"],
        "item_id": ui.item["beta"],
    }


# -- every /app/etl route -------------------------------------------------------------------


async def test_every_api_route_rejects_anonymous_calls(ui: Ui) -> None:
    routes = api_routes(ui.client.app)
    assert len(routes) > 25
    for method, path, _ in routes:
        url = concrete(path, beta_ids(ui))
        answer = await ui.client.request(method, url, json={})
        assert answer.status == 401, (method, path)
        assert (await answer.json())["error"]["code"] == "unauthorized"
        forged = await ui.client.request(
            method, url, headers={"Cookie": f"{COOKIE}=forged.value"}, json={}
        )
        assert forged.status == 401, (method, path)


async def test_other_tenants_ids_answer_404(ui: Ui) -> None:
    me = await login(ui.client, "alpha-admin")
    ids = beta_ids(ui)
    with_ids = [(m, p) for m, p, _ in api_routes(ui.client.app) if "{" in p]
    unknown = {name for _, p in with_ids for name in re.findall(r"{([a-z_]+)}", p)} - set(ids)
    assert not unknown, f"give beta_ids() a row of tenant beta for {unknown}"
    for method, path in with_ids:
        for headers in (me.headers(csrf=True), ui.world.auth("alpha")):
            answer = await ui.client.request(method, concrete(path, ids), headers=headers, json={})
            assert answer.status == 404, (method, path, await answer.text())
    # Routes that name the integration in the query or the body.
    beta = ui.integration["beta"]
    for method, path, body in [
        ("GET", f"/app/etl/custom-fields?integration_id={beta}", None),
        ("GET", f"/app/etl/custom-fields/mapping?integration_id={beta}", None),
        ("GET", f"/app/etl/status-mappings?integration_id={beta}", None),
        ("POST", "/app/etl/custom-fields/sync", {"integration_id": beta}),
        ("PUT", "/app/etl/custom-fields/mapping", {"integration_id": beta}),
        ("PUT", "/app/etl/status-mappings", {"integration_id": beta, "mappings": []}),
        ("GET", f"/app/etl/jobs?tenant_id={ui.world.tenants['beta']}", None),
    ]:
        answer = await ui.client.request(method, path, headers=me.headers(csrf=True), json=body)
        assert answer.status == 404, (method, path)
    # The pages too, in the app's layout.
    for method, path in [
        ("GET", f"/jobs/{ids['job_id']}"),
        ("POST", f"/jobs/{ids['job_id']}/run"),
        ("GET", f"/integrations/{beta}/edit"),
        ("POST", f"/integrations/{beta}/test"),
        ("GET", f"/work-items/{ids['item_id']}"),
        ("POST", f"/dead-letters/{ids['dead_id']}/requeue"),
        ("GET", f"/custom-fields?integration_id={beta}"),
        ("GET", f"/statuses?integration_id={beta}"),
    ]:
        answer = await ui.client.request(
            method, path, headers=me.headers(), data={"csrf_token": me.csrf}
        )
        assert answer.status == 404, (method, path)
        assert "Page not found" in await answer.text()


async def test_session_cookie_changes_need_the_csrf_token(ui: Ui) -> None:
    me = await login(ui.client, "alpha-admin")
    unsafe = [(m, p) for m, p, _ in api_routes(ui.client.app) if m not in ("GET", "HEAD")]
    assert unsafe
    ids = {**beta_ids(ui), "job_id": ui.world.jobs["alpha"], "dead_id": ui.dead["alpha"],
           "integration_id": ui.integration["alpha"]}  # fmt: skip
    for method, path in unsafe:
        url = concrete(path, ids)
        answer = await ui.client.request(method, url, headers=me.headers(), json={})
        assert answer.status == 403, (method, path)
        assert "CSRF" in (await answer.json())["error"]["message"]
        wrong = {**me.headers(), "X-CSRF-Token": "not-the-token"}
        assert (await ui.client.request(method, url, headers=wrong, json={})).status == 403
    # Forms: the token travels as a field.
    job = ui.world.jobs["alpha"]
    bare = await ui.client.post(
        f"/jobs/{job}/active", headers=me.headers(), data={"active": "false"}
    )
    assert bare.status == 403
    assert "CSRF" in await bare.text()
    good = await ui.client.post(
        f"/jobs/{job}/active",
        headers=me.headers(),
        data={"active": "false", "csrf_token": me.csrf},
        allow_redirects=False,
    )
    assert good.status == 303
    async with ui.world.daemon.pool.acquire() as conn:  # type: ignore[union-attr]
        assert await conn.fetchval("SELECT active FROM etl_jobs WHERE id = $1", job) is False
    assert (await ui.client.post("/logout", headers=me.headers())).status == 403
    # Bearer tokens and the service key need no CSRF token.
    patch = await ui.client.patch(
        f"/app/etl/jobs/{job}", headers=ui.world.auth("alpha"), json={"active": True}
    )
    assert patch.status == 200


async def test_oversized_bodies_answer_413(ui: Ui) -> None:
    me = await login(ui.client, "alpha-admin")
    big = "x" * (MAX_BODY + 10)
    ids = {**beta_ids(ui), "job_id": ui.world.jobs["alpha"], "dead_id": ui.dead["alpha"],
           "integration_id": ui.integration["alpha"]}  # fmt: skip
    for method, path, _ in api_routes(ui.client.app):
        if method == "GET":
            continue
        url = concrete(path, ids)
        for headers in (ui.world.auth("alpha"), me.headers(csrf=True)):
            answer = await ui.client.request(
                method, url, data=big, headers={**headers, "Content-Type": "application/json"}
            )
            assert answer.status == 413, (method, path)
            assert (await answer.json())["error"]["code"] == "payload_too_large"
    # A form to the API with the session cookie: JSON 413 too.
    form = await ui.client.post(
        "/app/etl/workers/restart", headers=me.headers(), data={"csrf_token": me.csrf, "x": big}
    )
    assert form.status == 413
    assert form.content_type == "application/json"
    # A form to a page: the app's 413 page.
    page = await ui.client.post(
        "/integrations", headers=me.headers(), data={"csrf_token": me.csrf, "name": big}
    )
    assert page.status == 413
    assert page.content_type == "text/html"
    assert "Too much data" in await page.text()


async def test_openapi_document_lists_every_route(ui: Ui) -> None:
    answer = await ui.client.get("/app/etl/openapi.json", headers=ui.world.auth("viewer"))
    assert answer.status == 200
    doc = await answer.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(m, p) for m, p, _ in api_routes(ui.client.app)}
    assert documented == served
    for ops in doc["paths"].values():
        for op in ops.values():
            assert op["summary"]
            assert not op["summary"].startswith(("GET ", "POST "))
    runs = doc["paths"]["/app/etl/jobs/{job_id}/runs"]["get"]
    assert {p["name"] for p in runs["parameters"]} == {"job_id", "limit", "offset"}
    assert (await ui.client.get("/app/etl/openapi.json")).status == 401


# -- sessions and login ------------------------------------------------------------------------


async def test_login_is_rate_limited_per_username_and_address(ui: Ui) -> None:
    form_page = await ui.client.get("/login")
    anon = session_cookie_of(form_page)
    csrf = csrf_of(await form_page.text())

    async def attempt(username: str, password: str) -> aiohttp.ClientResponse:
        return await ui.client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf},
            headers={"Cookie": f"{COOKIE}={anon}"},
            allow_redirects=False,
        )

    for _ in range(5):
        assert (await attempt("alpha-admin", "wrong")).status == 401
    locked = await attempt("alpha-admin", PASSWORD)  # even the right password waits
    assert locked.status == 429
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    assert "Too many failed sign-ins" in await locked.text()
    # Another user from the same address is still let in.
    assert (await attempt("beta-admin", PASSWORD)).status == 303
    # Unknown usernames count against the address: 20 failures lock it.
    for n in range(15):
        assert (await attempt(f"nobody-{n}", "x")).status == 401
    assert (await attempt("beta-admin", PASSWORD)).status == 429


def test_failure_limiter_forgets_after_the_window() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, 60.0, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed("k")
        now[0] += 1
    assert limiter.retry_after("k") == pytest.approx(57.0)
    now[0] += 58
    assert limiter.retry_after("k") == 0
    limiter.failed("k")
    limiter.clear("k")
    assert limiter.retry_after("k") == 0


async def test_session_cookie_flags_and_lifetime(ui: Ui) -> None:
    form_page = await ui.client.get("/login")
    answer = await ui.client.post(
        "/login",
        data={
            "username": "Alpha-Admin",
            "password": PASSWORD,
            "csrf_token": csrf_of(await form_page.text()),
        },
        headers={"Cookie": f"{COOKIE}={session_cookie_of(form_page)}"},
        allow_redirects=False,
    )
    assert answer.status == 303
    header = next(h for h in answer.headers.getall("Set-Cookie") if h.startswith(COOKIE))
    flags = {part.strip().split("=")[0].lower(): part for part in header.split(";")}
    assert "httponly" in flags
    assert flags["samesite"].strip().lower() == "samesite=lax"
    assert flags["max-age"].strip().lower() == "max-age=3600"
    assert flags["path"].strip() == "Path=/"
    assert "secure" not in flags  # public_url is not https here
    cookie = session_cookie_of(answer)
    assert cookie is not None
    # A tampered cookie is no session.
    body, _, mac = cookie.partition(".")
    tampered = f"{body[:-2]}AA.{mac}"
    page = await ui.client.get(
        "/", headers={"Cookie": f"{COOKIE}={tampered}"}, allow_redirects=False
    )
    assert page.status == 303
    assert page.headers["Location"] == "/login"
    # A password change ends the session at once.
    async with ui.world.daemon.pool.acquire() as conn:  # type: ignore[union-attr]
        await conn.execute(SQL["users.set_password"], "alpha-admin", hash_password("new one"))
    again = await ui.client.get(
        "/", headers={"Cookie": f"{COOKIE}={cookie}"}, allow_redirects=False
    )
    assert again.status == 303


async def test_secure_flag_when_public_url_is_https(
    pool: asyncpg.Pool, db_url: str, aiohttp_client: Any
) -> None:
    config = web_config(db_url, web={"public_url": "https://etl.example.com"})
    world = await build_world(pool, config)
    await add_user(pool, world.tenants["alpha"], "secure-admin", "admin")
    client = await aiohttp_client(create_app(world.daemon), cookie_jar=aiohttp.DummyCookieJar())
    page = await client.get("/login")
    header = next(h for h in page.headers.getall("Set-Cookie") if h.startswith(COOKIE))
    assert "secure" in header.lower()


async def test_session_reaches_the_api_and_the_websocket_of_its_tenant_only(ui: Ui) -> None:
    me = await login(ui.client, "alpha-admin")
    jobs = await ui.client.get("/app/etl/jobs", headers=me.headers())
    assert jobs.status == 200
    assert [j["id"] for j in (await jobs.json())["jobs"]] == [ui.world.jobs["alpha"]]
    alpha, beta = ui.world.tenants["alpha"], ui.world.tenants["beta"]
    ws = await ui.client.ws_connect(f"/ws/tenant/{alpha}", headers=me.headers())
    first = await ws.receive_json(timeout=5)
    assert first["type"] == "job_status_update"
    assert first["job_id"] == ui.world.jobs["alpha"]
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await ui.client.ws_connect(f"/ws/tenant/{beta}", headers=me.headers())
    assert refused.value.status == 403
    foreign = {**me.headers(), "Origin": "https://evil.example.com"}
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await ui.client.ws_connect(f"/ws/tenant/{alpha}", headers=foreign)


async def test_viewers_may_look_but_not_act(ui: Ui) -> None:
    viewer = await login(ui.client, "alpha-viewer")
    page = await ui.client.get("/", headers=viewer.headers())
    assert page.status == 200
    assert "Run now" not in await page.text()
    job = ui.world.jobs["alpha"]
    answer = await ui.client.post(
        f"/jobs/{job}/run", headers=viewer.headers(), data={"csrf_token": viewer.csrf}
    )
    assert answer.status == 403
    api = await ui.client.post(f"/app/etl/jobs/{job}/run", headers=viewer.headers(csrf=True))
    assert api.status == 403
    out = await ui.client.post(
        "/logout", headers=viewer.headers(), data={"csrf_token": viewer.csrf}, allow_redirects=False
    )
    assert out.status == 303
    assert out.headers["Location"] == "/login"
    assert any(h.startswith(f"{COOKIE}=;") or f"{COOKIE}=\"\"" in h
               for h in out.headers.getall("Set-Cookie"))  # fmt: skip


# -- pages ---------------------------------------------------------------------------------------


async def test_pages_need_a_session_and_render_with_the_banner(ui: Ui) -> None:
    pages = ["/", f"/jobs/{ui.world.jobs['alpha']}", "/integrations", "/integrations/new",
             f"/integrations/{ui.integration['alpha']}/edit", "/custom-fields", "/statuses",
             "/queues", "/work-items", f"/work-items/{ui.item['alpha']}"]  # fmt: skip
    for path in pages:
        answer = await ui.client.get(path, allow_redirects=False)
        assert answer.status == 303, path
        assert answer.headers["Location"].startswith("/login")
    me = await login(ui.client, "alpha-admin")
    for path in pages:
        answer = await ui.client.get(path, headers=me.headers())
        text = await answer.text()
        assert answer.status == 200, (path, text[:2000])
        assert 'href="/integrations"' in text  # the layout's navigation
        # No broker in this test: the banner says so on every page.
        assert "RabbitMQ is unreachable" in text
    missing = await ui.client.get("/no/such/page", headers=me.headers())
    assert missing.status == 404
    assert "Page not found" in await missing.text()
    api_missing = await ui.client.get("/app/etl/nope", headers=me.headers())
    assert (await api_missing.json())["error"]["code"] == "not_found"
    login_page = await ui.client.get("/login?next=https://evil.example.com/")
    assert 'value="/"' in await login_page.text()


async def test_work_item_pages_show_filters_and_detail(ui: Ui) -> None:
    me = await login(ui.client, "alpha-admin")
    page = await ui.client.get("/work-items?q=ALPHA", headers=me.headers())
    text = await page.text()
    assert "ALPHA-1" in text
    assert "BETA-1" not in text
    detail = await ui.client.get(f"/work-items/{ui.item['alpha']}", headers=me.headers())
    body = await detail.text()
    assert "Workflow metrics" in body
    assert "total cycle time seconds" in body


# -- integrations and work items JSON ------------------------------------------------------


async def test_integrations_api_keeps_credentials_write_only(ui: Ui) -> None:
    site = generate_site(5, 3)
    jira = TestServer(create_jira_app(site, user="bot@acme.com", token="right-token-1234"))
    await jira.start_server()
    try:
        auth = ui.world.auth("alpha")
        created = await ui.client.post(
            "/app/etl/integrations",
            headers=auth,
            json={
                "name": "jira-sim",
                "provider": "jira",
                "base_url": str(jira.make_url("")),
                "username": "bot@acme.com",
                "token": "right-token-1234",
                "projects": "P1, P2",
                "allow_private_network": True,
            },
        )
        assert created.status == 201, await created.text()
        item = await created.json()
        assert "token" not in item
        assert item["credentials_hint"] == "…1234"
        assert item["projects"] == ["P1", "P2"]
        assert item["job_id"] is not None
        async with ui.world.daemon.pool.acquire() as conn:  # type: ignore[union-attr]
            blob = await conn.fetchval(
                "SELECT credentials FROM integrations WHERE id = $1", item["id"]
            )
            job = await conn.fetchrow("SELECT * FROM etl_jobs WHERE id = $1", item["job_id"])
        assert b"right-token-1234" not in bytes(blob)
        assert job["integration_id"] == item["id"]
        assert (
            "right-token"
            not in await (
                await ui.client.get(f"/app/etl/integrations/{item['id']}", headers=auth)
            ).text()
        )
        tested = await ui.client.post(f"/app/etl/integrations/{item['id']}/test", headers=auth)
        result = await tested.json()
        assert result["ok"] is True, result
        assert "connected to Jira" in result["message"]
        patched = await ui.client.patch(
            f"/app/etl/integrations/{item['id']}",
            headers=auth,
            json={"token": "wrong-token-9999", "active": False},
        )
        assert patched.status == 200
        assert (await patched.json())["credentials_hint"] == "…9999"
        assert (await patched.json())["active"] is False
        tested = await ui.client.post(f"/app/etl/integrations/{item['id']}/test", headers=auth)
        result = await tested.json()
        assert result["ok"] is False
        assert "refused the credentials" in result["message"]
        listed = await ui.client.get("/app/etl/integrations?limit=1&offset=0", headers=auth)
        data = await listed.json()
        assert len(data["integrations"]) == 1
        assert data["limit"] == 1
    finally:
        await jira.close()


async def test_integration_refuses_private_addresses_unless_allowed(ui: Ui) -> None:
    answer = await ui.client.post(
        "/app/etl/integrations",
        headers=ui.world.auth("alpha"),
        json={"name": "sneaky", "provider": "jira", "base_url": "http://127.0.0.1:9/"},
    )
    assert answer.status == 422
    assert "base_url" in (await answer.json())["error"]["message"]


async def test_work_items_api_filters_and_pages(ui: Ui) -> None:
    auth = ui.world.auth("alpha")
    alpha, integ = ui.world.tenants["alpha"], ui.integration["alpha"]
    pool = ui.world.daemon.pool
    assert pool is not None
    for n in range(2, 6):
        await add_work_item(pool, alpha, integ, f"ALPHA-{n}")
    page = await ui.client.get("/app/etl/work-items?limit=2&offset=0", headers=auth)
    data = await page.json()
    assert data["total"] == 5
    assert len(data["work_items"]) == 2
    found = await ui.client.get(
        "/app/etl/work-items?field=custom_field_03&value=value-ALPHA-4", headers=auth
    )
    assert [w["key"] for w in (await found.json())["work_items"]] == ["ALPHA-4"]
    bad = await ui.client.get("/app/etl/work-items?field=password_hash&value=x", headers=auth)
    assert bad.status == 400
    detail = await ui.client.get(f"/app/etl/work-items/{ui.item['alpha']}", headers=auth)
    item = await detail.json()
    assert set(item["metrics"]) >= {"total_cycle_time_seconds", "rework_indicator"}
    assert len(item["metrics"]) == 15
    assert item["transitions"] == []
    assert item["pull_requests"] == []
    start = time.monotonic()
    assert (await ui.client.get("/app/etl/work-items?q=%25", headers=auth)).status == 200
    assert time.monotonic() - start < 5


async def test_pages_say_when_postgresql_is_down(ui: Ui) -> None:
    me = await login(ui.client, "alpha-admin")
    pool = ui.world.daemon.pool
    assert pool is not None
    await pool.close()  # what the pages see when PostgreSQL goes away
    page = await ui.client.get("/", headers=me.headers())
    assert page.status == 503
    text = await page.text()
    assert "PostgreSQL is unreachable" in text
    assert "Service unavailable" in text
