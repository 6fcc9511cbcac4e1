"""Harness for the Jira source tests: a simulated site served on 127.0.0.1, a tenant with a
Jira integration in a fresh database, runs, and steps driven stage by stage.

Extraction goes through `PageStore`, an ExtractOutput that stores pages in
raw_extraction_data through the real pool exactly as the extraction stage does; transforms
read the stored rows back, so every test exercises the retransform path too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

import etld.sources.builtin  # noqa: F401  (registers the built-in sources)
from etld.config import Config, parse_config
from etld.jobs.runs import RunContext
from etld.jobs.status import StepDef
from etld.simulator import ApiCallCounter, FaultPlan, JiraSite, create_jira_app, generate_site
from etld.sources.base import Integration, RawPage, Step, StepContext, get_source
from etld.store.queries import SQL
from etld.workers.stages import insert_page, page_body, read_page

NOW = datetime(2025, 3, 1, tzinfo=UTC)
USER = "etl@example.com"
TOKEN = "s3cret-token"
TOKEN_ENV = "ETLD_TEST_JIRA_TOKEN"
SITE_SEED = 11


class Crash(Exception):
    """Stands for a worker dying in the middle of an extraction."""


class PageStore:
    """ExtractOutput storing pages like the extraction stage, recording what happened."""

    def __init__(self, pool: asyncpg.Pool, run: RunContext, crash_after: int | None = None):
        self.pool = pool
        self.run = run
        self.crash_after = crash_after
        self.raw_ids: list[int] = []
        self.keys: list[tuple[str, str]] = []
        self.follow_ups: list[tuple[str, dict[str, Any]]] = []
        self.api_calls = 0

    async def store_page(
        self,
        type_: str,
        payload: Any,
        page_key: str,
        *,
        item_count: int | None = None,
        verbatim: Mapping[str, bytes] | None = None,
        checkpoint: tuple[str, Mapping[str, Any]] | None = None,
    ) -> int:
        if self.crash_after is not None and len(self.raw_ids) >= self.crash_after:
            raise Crash(f"crashed before storing {type_}/{page_key}")
        body = page_body(payload, verbatim)
        async with self.pool.acquire() as conn:  # page and checkpoint: one statement
            # step None: only re-transform runs look it up
            raw_id, _ = await insert_page(
                conn, self.run, type_, body, item_count, page_key, None, checkpoint
            )
        self.raw_ids.append(raw_id)
        self.keys.append((type_, page_key))
        return raw_id

    async def follow_up(self, key: str, payload: dict[str, Any]) -> None:
        self.follow_ups.append((key, payload))

    def count_api_calls(self, calls: int) -> None:
        self.api_calls += calls


@dataclass
class Collector:
    """TransformOutput recording embedding requests."""

    embeds: list[tuple[str, str, str]] = field(default_factory=list)

    def embed(
        self, table_name: str, external_ids: Sequence[str], operation: str = "upsert"
    ) -> None:
        self.embeds.extend((table_name, e, operation) for e in external_ids)


@dataclass
class Jira:
    pool: asyncpg.Pool
    config: Config
    site: JiraSite
    counter: ApiCallCounter
    server: TestServer
    tenant_id: int
    integration_id: int
    job_id: int
    run: RunContext | None = None

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def new_run(
        self,
        *,
        full_sync: bool,
        last_sync_date: datetime | None = None,
        config: dict[str, Any] | None = None,
    ) -> RunContext:
        async with self.pool.acquire() as conn:
            if self.run is not None:
                await conn.fetchrow(SQL["runs.finish_run"], self.run.run_id, "FINISHED", None)
            config = config or {}
            steps = get_source("jira").steps(config)
            defs = [{"name": s.name, "display_name": s.display_name} for s in steps]
            started = datetime.now(UTC)
            run_id = await conn.fetchval(
                SQL["runs.claim_run"],
                self.tenant_id,
                self.job_id,
                "manual",
                full_sync,
                None,
                defs,
                config,
                started,
            )
        self.run = RunContext(
            run_id=run_id,
            tenant_id=self.tenant_id,
            job_id=self.job_id,
            integration_id=self.integration_id,
            provider="jira",
            tier="free",
            outcome="RUNNING",
            current_step=1,
            steps=tuple(StepDef(s.name, s.display_name) for s in steps),
            full_sync=full_sync,
            config=config,
            started_at=started,
            last_sync_date=last_sync_date,
            trigger="manual",
        )
        return self.run

    async def context(self, run: RunContext) -> StepContext:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(SQL["raw.integration"], self.integration_id)
        return StepContext(run, Integration.from_row(row), self.pool, self.config)

    async def extract(
        self, run: RunContext, step: Step, store: PageStore | None = None
    ) -> PageStore:
        """The step's root item, then every item it fanned out, like the stage would."""
        store = store if store is not None else PageStore(self.pool, run)
        ctx = await self.context(run)
        await step.extract(ctx, {"step": step.name, "work_id": f"{step.name}:x"}, store)
        done = 0
        while done < len(store.follow_ups):
            key, payload = store.follow_ups[done]
            done += 1
            await step.extract(ctx, {"step": step.name, "work_id": key, **payload}, store)
        return store

    async def pages(self, raw_ids: Sequence[int]) -> list[RawPage]:
        async with self.pool.acquire() as conn:
            pages = [
                await read_page(conn, raw_id, self.tenant_id) for raw_id in dict.fromkeys(raw_ids)
            ]
        return [p for p in pages if p is not None]

    async def transform(
        self, run: RunContext, step: Step, raw_ids: Sequence[int]
    ) -> tuple[int, Collector]:
        ctx = await self.context(run)
        collector = Collector()
        records = 0
        for page in await self.pages(raw_ids):
            records += await step.transform(ctx, page, collector)
        return records, collector

    async def sync(self, run: RunContext, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Run steps in order, extraction then transform; per step (store, records, collector)."""
        out: dict[str, Any] = {}
        for step in get_source("jira").steps(run.config):
            if names is not None and step.name not in names:
                continue
            store = await self.extract(run, step)
            records, collector = await self.transform(run, step, store.raw_ids)
            out[step.name] = (store, records, collector)
        return out


MakeJira = Callable[..., Awaitable[Jira]]


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[Any]]:
    """Log events captured in memory: a test may have left logging pointed at a closed stream."""
    with capture_logs() as logs:
        yield logs


def jira_factory(
    pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> MakeJira:
    """For a `make_jira` fixture: a builder of worlds from `issues` (or a given `site`),
    simulator options and integration settings."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)

    async def build(
        issues: int = 300,
        *,
        site: JiraSite | None = None,
        faults: FaultPlan | None = None,
        user: str | None = None,
        token: str | None = None,
        settings: dict[str, Any] | None = None,
        allow_private_network: bool = True,
    ) -> Jira:
        site = site if site is not None else generate_site(issues, SITE_SEED, now=NOW)
        counter = ApiCallCounter()
        app = create_jira_app(site, user=user, token=token, faults=faults, counter=counter)
        server: TestServer = await aiohttp_server(app)
        base_url = str(server.make_url("")).rstrip("/")
        async with pool.acquire() as conn:
            tenant_id = await conn.fetchval(SQL["seed.upsert_tenant"], "acme", "free", True)
            integration_id = await conn.fetchval(
                SQL["seed.upsert_integration"],
                tenant_id,
                "jira",
                "jira",
                base_url,
                USER,
                {"token_env": TOKEN_ENV, **(settings or {})},
                allow_private_network,
                True,
            )
            job_id = await conn.fetchval(
                SQL["seed.ensure_job"], tenant_id, integration_id, "jira-sync", "jira_sync", 1
            )
        config = parse_config({})
        return Jira(pool, config, site, counter, server, tenant_id, integration_id, job_id)

    return build
