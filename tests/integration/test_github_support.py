"""Harness for the GitHub source tests: a simulated GitHub served on 127.0.0.1, a tenant with
a GitHub integration in a fresh database, runs, and steps driven stage by stage (pages stored
through the real pool by `PageStore`, then transformed from the stored rows)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

import etld.sources.builtin  # noqa: F401  (registers the built-in sources)
from etld.config import Config, parse_config
from etld.jobs.runs import RunContext
from etld.jobs.status import StepDef
from etld.simulator.faults import ApiCallCounter, FaultPlan
from etld.simulator.github import create_github_app
from etld.simulator.github_data import GitHubSite, SiteOptions, generate_github
from etld.simulator.github_web import STATUSES, RateLimits
from etld.sources.base import Integration, RawPage, Step, StepContext, get_source
from etld.store.queries import SQL
from etld.workers.errors import Retry
from etld.workers.stages import read_page
from tests.integration.test_jira_support import Collector, PageStore

NOW = datetime(2025, 3, 1, tzinfo=UTC)
TOKEN = "ghp_test-token"
TOKEN_ENV = "ETLD_TEST_GITHUB_TOKEN"
SEED = 5
STEPS = ("github_repositories", "github_pull_requests", "github_comments")


@dataclass
class GitHub:
    pool: asyncpg.Pool
    config: Config
    site: GitHubSite
    counter: ApiCallCounter
    limits: RateLimits
    server: TestServer
    tenant_id: int
    integration_id: int
    job_id: int
    run: RunContext | None = None

    @property
    def statuses(self) -> Counter[int]:
        return self.server.app[STATUSES]

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
            steps = get_source("github").steps(config)
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
            provider="github",
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
        self,
        run: RunContext,
        step: Step,
        store: PageStore | None = None,
        on_retry: Callable[[Retry], Awaitable[None]] | None = None,
    ) -> PageStore:
        """The step's root item, then every item it fanned out (each key once, as the run
        ledger has it). With `on_retry`, an item raising Retry is called again after it."""
        store = store if store is not None else PageStore(self.pool, run)
        ctx = await self.context(run)
        queue: list[tuple[str, dict[str, Any]]] = [(f"{step.name}:x", {})]
        seen = {queue[0][0]}
        while queue:
            key, payload = queue[0]
            before = len(store.follow_ups)
            try:
                await step.extract(ctx, {"step": step.name, "work_id": key, **payload}, store)
            except Retry as exc:
                if on_retry is None:
                    raise
                await on_retry(exc)
            else:
                queue.pop(0)
            for child in store.follow_ups[before:]:
                if child[0] not in seen:
                    seen.add(child[0])
                    queue.append(child)
        return store

    async def pages(self, raw_ids: Sequence[int]) -> list[RawPage]:
        async with self.pool.acquire() as conn:
            pages = [
                await read_page(conn, raw_id, self.tenant_id) for raw_id in dict.fromkeys(raw_ids)
            ]
        return [p for p in pages if p is not None]

    async def transform(
        self, run: RunContext, step: Step, raw_ids: Sequence[int], *, reverse: bool = False
    ) -> tuple[int, Collector]:
        ctx = await self.context(run)
        collector = Collector()
        records = 0
        pages = await self.pages(raw_ids)
        for page in reversed(pages) if reverse else pages:
            records += await step.transform(ctx, page, collector)
        return records, collector

    async def sync(
        self,
        run: RunContext,
        *,
        reverse: bool = False,
        on_retry: Callable[[Retry], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Every step in order, extraction then transform; per step (store, records, collector).
        `reverse` transforms each step's pages in the opposite order to their storing."""
        out: dict[str, Any] = {}
        for step in get_source("github").steps(run.config):
            store = await self.extract(run, step, on_retry=on_retry)
            records, collector = await self.transform(run, step, store.raw_ids, reverse=reverse)
            out[step.name] = (store, records, collector)
        return out


MakeGitHub = Callable[..., Awaitable[GitHub]]


def github_factory(
    pool: asyncpg.Pool, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> MakeGitHub:
    """For a `make_github` fixture: a builder of worlds from `prs` (or a given `site`),
    simulator options and integration settings."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)

    async def build(
        prs: int = 60,
        *,
        site: GitHubSite | None = None,
        options: SiteOptions | None = None,
        faults: FaultPlan | None = None,
        limits: RateLimits | None = None,
        server_tokens: Sequence[str] | None = None,
        secret: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> GitHub:
        site = site if site is not None else generate_github(prs, SEED, now=NOW, options=options)
        counter = ApiCallCounter()
        limits = limits if limits is not None else RateLimits()
        app = create_github_app(
            site, token=server_tokens or TOKEN, faults=faults, counter=counter, limits=limits
        )
        server: TestServer = await aiohttp_server(app)
        base_url = str(server.make_url("")).rstrip("/")
        if secret is not None:
            monkeypatch.setenv(TOKEN_ENV, secret)
        async with pool.acquire() as conn:
            tenant_id = await conn.fetchval(SQL["seed.upsert_tenant"], "acme", "free", True)
            integration_id = await conn.fetchval(
                SQL["seed.upsert_integration"],
                tenant_id,
                "github",
                "github",
                base_url,
                None,
                {"token_env": TOKEN_ENV, "organization": "acme", **(settings or {})},
                True,
                True,
            )
            job_id = await conn.fetchval(
                SQL["seed.ensure_job"], tenant_id, integration_id, "github-sync", "github_sync", 2
            )
        return GitHub(
            pool, parse_config({}), site, counter, limits, server, tenant_id, integration_id, job_id
        )

    return build


async def add_work_items(pool: asyncpg.Pool, tenant_id: int, keys: Sequence[str]) -> dict[str, int]:
    """Jira work items with these keys (in a Jira integration of the tenant): key -> id."""
    async with pool.acquire() as conn:
        jira = await conn.fetchval(
            SQL["seed.upsert_integration"],
            tenant_id,
            "jira",
            "jira",
            "https://jira.example.com",
            "etl@example.com",
            {},
            False,
            True,
        )
        rows = await conn.fetch(
            "INSERT INTO work_items (tenant_id, integration_id, external_id, key) "
            "SELECT $1, $2, 'x' || k, k FROM unnest($3::text[]) AS k RETURNING id, key",
            tenant_id,
            jira,
            list(keys),
        )
    return {r["key"]: r["id"] for r in rows}


async def rows(pool: asyncpg.Pool, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]
