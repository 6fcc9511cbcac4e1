"""The declarative REST source through the whole pipeline, against a small JSON API served on
127.0.0.1 with one endpoint per pagination style (page, offset, cursor, Link header, next-URL
field), each filtering by an incremental `since` cursor and requiring a bearer token.

The first run loads exactly the API's records (one stream mapped into work_items, the others
into their raw tables); after two records change, the second run asks each endpoint only for
what changed since the first run's cursor and loads only that; a third run changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import etld.sources.builtin  # noqa: F401  (registers the built-in sources)
from etld.config import Config
from etld.daemon import Daemon
from etld.jobs.control import get_job, start_job
from etld.jobs.runs import Runs
from etld.seed import seed_from_config
from etld.sources.base import Integration, RawPage, StepContext, get_source
from etld.store.queries import SQL
from etld.sync import SyncReport, SyncRequest, run_sync

TOKEN, TOKEN_ENV = "rest-test-token", "ETLD_TEST_REST_TOKEN"
BASE = datetime(2025, 1, 1, tzinfo=UTC)
STREAMS = ("tickets", "by_offset", "by_cursor", "by_link", "by_next")


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeApi:
    """Records with update times; every endpoint serves them in id order after `since`."""

    def __init__(self, count: int) -> None:
        self.records: list[dict[str, Any]] = [
            {
                "id": n,
                "title": f"Record {n}",
                "state": {"name": "Open" if n % 3 else "Closed"},
                "tags": [f"t{n % 4}"],
                "created_at": stamp(BASE + timedelta(hours=n)),
                "updated_at": stamp(BASE + timedelta(hours=n, minutes=30)),
            }
            for n in range(1, count + 1)
        ]
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.served: dict[str, int] = {}

    def change(self, ids: list[int], at: datetime) -> None:
        for record in self.records:
            if record["id"] in ids:
                record["title"] += " (edited)"
                record["updated_at"] = stamp(at)

    def visible(self, request: web.Request) -> list[dict[str, Any]]:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized()
        self.requests.append((request.path, dict(request.query)))
        since = request.query.get("since")
        return [r for r in self.records if since is None or r["updated_at"] > since]

    def serve(self, name: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.served[name] = self.served.get(name, 0) + len(records)
        return records

    async def page(self, request: web.Request) -> web.Response:
        rows, size = self.visible(request), int(request.query["per_page"])
        start = (int(request.query["page"]) - 1) * size
        return web.json_response(
            {"data": {"items": self.serve("tickets", rows[start : start + size])}}
        )

    async def offset(self, request: web.Request) -> web.Response:
        rows, size, start = self.visible(request), int(request.query["limit"]), 0
        start = int(request.query["offset"])
        return web.json_response({"results": self.serve("by_offset", rows[start : start + size])})

    async def cursor(self, request: web.Request) -> web.Response:
        rows = self.visible(request)
        after = int(request.query.get("cursor", "0"))
        chunk = [r for r in rows if r["id"] > after][:7]
        more = chunk and chunk[-1]["id"] != rows[-1]["id"]
        meta = {"next": str(chunk[-1]["id"]) if more else None}
        return web.json_response({"items": self.serve("by_cursor", chunk), "meta": meta})

    async def link(self, request: web.Request) -> web.Response:
        rows, page = self.visible(request), int(request.query.get("p", "1"))
        chunk = rows[(page - 1) * 6 : page * 6]
        headers = {}
        if page * 6 < len(rows):
            nxt = request.url.update_query({"p": str(page + 1)})
            headers["Link"] = f'<{nxt}>; rel="next", <{request.url}>; rel="first"'
        return web.json_response(self.serve("by_link", chunk), headers=headers)

    async def next_url(self, request: web.Request) -> web.Response:
        rows, start = self.visible(request), int(request.query.get("start", "0"))
        chunk = rows[start : start + 8]
        nxt = None
        if start + 8 < len(rows):  # relative, as many APIs answer
            nxt = str(request.rel_url.update_query({"start": str(start + 8)}))
        return web.json_response({"records": self.serve("by_next", chunk), "next": nxt})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/page", self.page)
        app.router.add_get("/api/offset", self.offset)
        app.router.add_get("/api/cursor", self.cursor)
        app.router.add_get("/api/link", self.link)
        app.router.add_get("/api/next", self.next_url)
        return app


def rest_settings() -> dict[str, Any]:
    inc = {"field": "updated_at", "param": "since"}
    return {
        "auth": {"type": "bearer"},
        "streams": [
            {
                "name": "tickets",
                "path": "/api/page",
                "records": "data.items",
                "primary_key": "id",
                "pagination": {"type": "page", "size_param": "per_page", "size": 10},
                "incremental": inc,
                "mapping": {
                    "key": "id",
                    "summary": "title",
                    "status": "state.name",
                    "labels": "tags",
                    "created": "created_at",
                    "updated": "updated_at",
                },
            },
            {
                "name": "by_offset",
                "path": "/api/offset",
                "records": "results",
                "primary_key": "id",
                "pagination": {"type": "offset", "size": 10},
                "incremental": inc,
            },
            {
                "name": "by_cursor",
                "path": "/api/cursor",
                "records": "items",
                "primary_key": "id",
                "pagination": {"type": "cursor", "cursor_field": "meta.next"},
                "incremental": inc,
            },
            {
                "name": "by_link",
                "path": "/api/link",
                "primary_key": "id",
                "pagination": {"type": "link"},
                "incremental": inc,
            },
            {
                "name": "by_next",
                "path": "/api/next",
                "records": "records",
                "primary_key": "id",
                "pagination": {"type": "next_url", "next_url_field": "next"},
                "incremental": inc,
            },
        ],
    }


@pytest.fixture
async def world(
    make_config: Callable[..., Config], aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FakeApi, Config, Daemon]]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    api = FakeApi(25)
    server: TestServer = await aiohttp_server(api.app())
    config = make_config(
        workers={"free": {"extraction": 3, "transform": 3, "embedding": 0}},
        pipeline={"job_workers": 1},
        scheduler={"enabled": False},
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[
            {
                "tenant": "acme",
                "name": "tickets",
                "provider": "rest",
                "base_url": str(server.make_url("")).rstrip("/"),
                "token_env": TOKEN_ENV,
                "allow_private_network": True,
                "settings": rest_settings(),
            }
        ],
    )
    daemon = Daemon(config, frozenset({"workers"}))
    await daemon.start()
    yield api, config, daemon
    await daemon.shutdown()


async def sync(config: Config, daemon: Daemon) -> SyncReport:
    report = await run_sync(
        config, SyncRequest("acme", "tickets", timeout=60), say=lambda _: None, daemon=daemon
    )
    assert report.outcome == "FINISHED", (report.error, report.dead_letters)
    return report


async def loaded(pool: asyncpg.Pool, integration_id: int) -> dict[str, dict[str, str]]:
    """Per stream: external id -> title, from work_items or the stream's raw table."""
    out: dict[str, dict[str, str]] = {}
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT external_id, summary FROM work_items")
        out["tickets"] = {r["external_id"]: r["summary"] for r in rows}
        for stream in STREAMS[1:]:
            table = f"rest_{integration_id}_{stream}"
            rows = await conn.fetch(f'SELECT external_id, payload FROM "{table}"')
            out[stream] = {r["external_id"]: r["payload"]["title"] for r in rows}
    return out


async def test_every_pagination_style_syncs_exactly_and_incrementally(
    world: tuple[FakeApi, Config, Daemon],
) -> None:
    api, config, daemon = world
    pool = daemon.pool
    assert pool is not None
    async with pool.acquire() as conn:
        integration_id = await conn.fetchval("SELECT id FROM integrations WHERE name = 'tickets'")

    first = await sync(config, daemon)
    assert [s["name"] for s in first.steps] == [f"rest_{s}" for s in STREAMS]
    truth = {str(r["id"]): r["title"] for r in api.records}
    assert await loaded(pool, integration_id) == {s: truth for s in STREAMS}
    assert api.served == {s: 25 for s in STREAMS}
    assert not any("since" in q for _, q in api.requests)
    async with pool.acquire() as conn:
        item = await conn.fetchrow(
            "SELECT w.key, w.labels, w.created, w.updated, s.name AS status FROM work_items w "
            "JOIN statuses s ON s.id = w.status_id WHERE w.external_id = '3'"
        )
        tables = await conn.fetch("SELECT stream FROM rest_raw_tables ORDER BY stream")
    assert dict(item) == {
        "key": "3",
        "labels": ["t3"],
        "created": BASE + timedelta(hours=3),
        "updated": BASE + timedelta(hours=3, minutes=30),
        "status": "Closed",
    }
    assert [t["stream"] for t in tables] == sorted(STREAMS[1:])

    # Two records change: each stream asks only for what changed since its cursor.
    api.change([4, 17], BASE + timedelta(days=30))
    api.requests.clear()
    api.served.clear()
    await sync(config, daemon)
    assert api.served == {s: 2 for s in STREAMS}
    newest = stamp(BASE + timedelta(hours=25, minutes=30))
    assert {q.get("since") for _, q in api.requests} == {newest}
    truth = {str(r["id"]): r["title"] for r in api.records}
    assert await loaded(pool, integration_id) == {s: truth for s in STREAMS}
    assert truth["17"] == "Record 17 (edited)"

    # Nothing changed: one empty page per stream, and no row is written again.
    async with pool.acquire() as conn:
        before = await conn.fetch("SELECT external_id, last_updated_at FROM work_items")
    api.served.clear()
    third = await sync(config, daemon)
    assert api.served == {s: 0 for s in STREAMS}
    assert third.records["transform"] == 0
    async with pool.acquire() as conn:
        after = await conn.fetch("SELECT external_id, last_updated_at FROM work_items")
    assert sorted(map(tuple, after)) == sorted(map(tuple, before))


async def test_mapped_records_ask_for_embeddings(world: tuple[FakeApi, Config, Daemon]) -> None:
    api, config, daemon = world
    pool = daemon.pool
    assert pool is not None
    report = await sync(config, daemon)
    runs = daemon.services["runs"]
    run = await runs.context(report.run_id)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(SQL["raw.integration"], run.integration_id)
    ctx = StepContext(run, Integration.from_row(row), pool, config)

    class Collect:
        def __init__(self) -> None:
            self.asked: list[tuple[str, list[str], str]] = []

        def embed(self, table: str, ids: Any, operation: str = "upsert") -> None:
            self.asked.append((table, list(ids), operation))

    changed = dict(api.records[0], title="Renamed", updated_at=stamp(BASE + timedelta(days=40)))
    fresh = dict(api.records[0], id=99, title="New one")
    page = RawPage(0, "rest_tickets", {"data": {"items": [changed, fresh, api.records[1]]}})
    out = Collect()
    step = get_source("rest").step("rest_tickets")
    assert await step.transform(ctx, page, out) == 3
    assert out.asked == [
        ("work_items", ["99"], "insert"),
        ("work_items", ["1"], "update"),
    ]


async def test_a_run_of_invalid_stored_settings_fails_naming_the_key(
    make_config: Callable[..., Config], pool: asyncpg.Pool
) -> None:
    config = make_config(
        tenants=[{"name": "acme", "tier": "free"}],
        integrations=[
            {
                "tenant": "acme",
                "name": "tickets",
                "provider": "rest",
                "base_url": "https://api.example.com",
                "settings": rest_settings(),
            }
        ],
    )
    await seed_from_config(pool, config)
    broken = rest_settings()
    broken["streams"][2]["pagination"]["type"] = "pages"  # as an API client might store it
    async with pool.acquire() as conn:
        await conn.execute("UPDATE integrations SET settings = $1", broken)
        job_id = await conn.fetchval("SELECT id FROM etl_jobs")
    job = await get_job(pool, job_id)
    assert job is not None

    class NoPublish:
        async def publish(self, *_: Any, **__: Any) -> None:
            raise AssertionError("nothing is published for a run that cannot start")

    result = await start_job(Runs(pool, NoPublish(), config), job, trigger="manual")
    assert result.outcome == "failed"
    async with pool.acquire() as conn:
        error = await conn.fetchval("SELECT error FROM etl_job_runs")
    assert error == (
        "invalid REST settings: settings.streams[2].pagination.type: expected one of page, "
        'offset, cursor, link, next_url, got "pages"'
    )
