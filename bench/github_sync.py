"""GitHub sync throughput: the source's steps against the simulator, extraction then transform.

    python -m bench.github_sync [--prs 500] [--commits 10] [--reviews 3] [--concurrency 4]

A simulated organisation of `--prs` pull requests (each with `--commits` commits, `--reviews`
reviews and two comments of each kind) is served by a child process, so its rendering is not
charged to etld. It is synced into a fresh PostgreSQL database the way the pipeline runs the
steps: per step, the root extraction item, then the items it fans out (`--concurrency` at a
time, as a stage's prefetch would), every page stored in raw_extraction_data; then every
stored page transformed (`--concurrency` at a time). Three runs: a full sync; the same full
sync with nothing changed (ETags: the simulator answers 304s); an incremental run with nothing
changed. Reported: pull requests per second, API calls per 100 pull requests (target about
2.1 per pull request: a commits and a reviews call each, plus the lists), what the
unchanged runs cost, new rows per second of transform, CPU seconds of the bench process per
1,000 pull requests (the steps run in it; PostgreSQL's CPU not included) and its peak RSS.
JSON goes to bench/results/github_sync.json. Needs the local PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.common import (
    Figure,
    free_port,
    fresh_database,
    print_table,
    server_process,
    write_result,
)

NOW = datetime(2025, 3, 1, tzinfo=UTC)
TOKEN_ENV = "ETLD_BENCH_GITHUB_TOKEN"
TARGET_CALLS_PER_100 = 215.0  # about 2.1 per pull request at 100 a page
LOADED_TABLES = (
    "repositories",
    "pull_requests",
    "pr_commits",
    "pr_reviews",
    "pr_comments",
    "work_items_prs_links",
)
RUNS = (("full sync", True), ("unchanged re-sync", True), ("unchanged incremental", False))


# -- the simulator child -------------------------------------------------------------------------


async def serve(port: int, args: argparse.Namespace) -> None:
    from etld.simulator.github import create_github_app
    from etld.simulator.github_data import SiteOptions, generate_github
    from etld.simulator.github_web import RateLimits

    options = SiteOptions(
        commits=(args.commits, args.commits),
        reviews=(args.reviews, args.reviews),
        review_comments=(2, 2),
        issue_comments=(2, 2),
        big=False,
    )
    site = generate_github(args.prs, args.seed, now=NOW, options=options)
    app = create_github_app(site, limits=RateLimits(limit=10**9))  # never limited
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


async def sim_stats(port: int, *, reset: bool = False) -> dict[str, Any]:
    """Calls (and answers by status) the simulator saw; `reset` starts counting again."""
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/_sim/"
        async with session.request("DELETE" if reset else "GET", url + "stats") as response:
            calls = int((await response.json())["total"])
        async with session.get(url + "limits") as response:
            statuses = (await response.json())["statuses"]
    return {"calls": calls, "statuses": statuses}


# -- one run of the steps --------------------------------------------------------------------------


class Pages:
    """ExtractOutput of the bench: pages stored as the extraction stage stores them."""

    def __init__(self, pool: asyncpg.Pool, run: Any, step: str) -> None:
        self.pool, self.run, self.step = pool, run, step
        self.raw_ids: list[int] = []
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.bytes = 0

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
        from etld.workers.stages import insert_page, page_body

        body = page_body(payload, verbatim)
        self.bytes += len(body)
        async with self.pool.acquire() as conn:  # page and checkpoint: one statement
            raw_id, _ = await insert_page(
                conn, self.run, type_, body, item_count, page_key, self.step, checkpoint
            )
        self.raw_ids.append(raw_id)
        return raw_id

    async def follow_up(self, key: str, payload: dict[str, Any]) -> None:
        self.items.append((key, payload))

    def count_api_calls(self, calls: int) -> None:
        pass


class Sink:
    def embed(self, table_name: str, external_ids: Any, operation: str = "upsert") -> None:
        pass


async def bounded(concurrency: int, jobs: list[Any]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Any) -> None:
        async with gate:
            await job

    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(one(job))


async def run_steps(
    pool: asyncpg.Pool, config: Any, ids: tuple[int, int, int], *, full: bool, workers: int
) -> dict[str, float]:
    from etld.jobs.runs import RunContext
    from etld.jobs.status import StepDef
    from etld.sources.base import Integration, Step, StepContext, get_source
    from etld.store.queries import SQL
    from etld.workers.stages import read_page

    tenant_id, integration_id, job_id = ids
    steps = get_source("github").steps({})
    started = datetime.now(UTC)
    defs = [{"name": s.name, "display_name": s.display_name} for s in steps]
    async with pool.acquire() as conn:
        run_id = await conn.fetchval(
            SQL["runs.claim_run"], tenant_id, job_id, "manual", full, None, defs, {}, started
        )
        row = await conn.fetchrow(SQL["raw.integration"], integration_id)
    run = RunContext(
        run_id=run_id,
        tenant_id=tenant_id,
        job_id=job_id,
        integration_id=integration_id,
        provider="github",
        tier="bench",
        outcome="RUNNING",
        current_step=1,
        steps=tuple(StepDef(s.name, s.display_name) for s in steps),
        full_sync=full,
        config={},
        started_at=started,
        last_sync_date=None if full else NOW,
        trigger="manual",
    )
    ctx = StepContext(run, Integration.from_row(row), pool, config)
    figures = {"seconds": 0.0, "extract_seconds": 0.0, "pages": 0, "bytes": 0}
    t0 = time.perf_counter()
    for step in steps:
        t1 = time.perf_counter()
        out = Pages(pool, run, step.name)
        await step.extract(ctx, {"step": step.name, "work_id": f"{step.name}:x"}, out)
        batches = [
            step.extract(ctx, {"step": step.name, "work_id": key, **payload}, out)
            for key, payload in out.items
        ]
        await bounded(workers, batches)
        figures["extract_seconds"] += time.perf_counter() - t1

        async def transform(raw_id: int, step: Step = step) -> None:
            # One page read when its turn comes, as a transform worker does: never a whole
            # step's pages in memory at once.
            async with pool.acquire() as conn:
                page = await read_page(conn, raw_id, tenant_id)
            assert page is not None
            await step.transform(ctx, page, Sink())

        await bounded(workers, [transform(raw_id) for raw_id in out.raw_ids])
        figures["pages"] += len(out.raw_ids)
        figures["bytes"] += out.bytes
    figures["seconds"] = time.perf_counter() - t0
    async with pool.acquire() as conn:
        await conn.fetchrow(SQL["runs.finish_run"], run_id, "FINISHED", None)
    return figures


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def table_rows(pool: asyncpg.Pool) -> int:
    """Rows in the tables the GitHub steps load (new rows only: updates count nothing)."""
    async with pool.acquire() as conn:
        counts = [await conn.fetchval(f"SELECT count(*) FROM {t}") for t in LOADED_TABLES]
    return sum(counts)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    import etld.sources.builtin  # noqa: F401  (registers the sources)
    from etld.config import parse_config
    from etld.store.migrate import migrate
    from etld.store.pool import create_pool
    from etld.store.queries import SQL

    port = free_port()
    os.environ[TOKEN_ENV] = "ghp_bench"
    child = (
        "serve",
        "--port",
        str(port),
        "--prs",
        str(args.prs),
        "--seed",
        str(args.seed),
        "--commits",
        str(args.commits),
        "--reviews",
        str(args.reviews),
    )
    runs: dict[str, Any] = {}
    async with server_process("bench.github_sync", *child), fresh_database("github") as url:
        await migrate(url)
        pool = await create_pool(
            url, min_size=1, max_size=args.concurrency + 2, timeout=10, command_timeout=120
        )
        try:
            async with pool.acquire() as conn:
                tenant = await conn.fetchval(SQL["seed.upsert_tenant"], "bench", "free", True)
                integration = await conn.fetchval(
                    SQL["seed.upsert_integration"],
                    tenant,
                    "github",
                    "github",
                    f"http://127.0.0.1:{port}",
                    None,
                    {"token_env": TOKEN_ENV, "organization": "acme"},
                    True,
                    True,
                )
                job = await conn.fetchval(
                    SQL["seed.ensure_job"], tenant, integration, "github-sync", "github_sync", 1
                )
            config = parse_config({"database": {"url": url}})
            for name, full in RUNS:
                await sim_stats(port, reset=True)
                before = (await sim_stats(port))["statuses"]
                rows_before = await table_rows(pool)
                cpu_before = cpu_seconds()
                figures = await run_steps(
                    pool, config, (tenant, integration, job), full=full, workers=args.concurrency
                )
                figures["cpu_seconds"] = cpu_seconds() - cpu_before
                figures["rows"] = await table_rows(pool) - rows_before
                stats = await sim_stats(port)
                figures["api_calls"] = stats["calls"]
                figures["not_modified"] = stats["statuses"].get("304", 0) - before.get("304", 0)
                runs[name] = figures
        finally:
            await pool.close()
    return {
        "prs": args.prs,
        "commits_per_pr": args.commits,
        "reviews_per_pr": args.reviews,
        "concurrency": args.concurrency,
        "runs": {
            name: {
                "seconds": round(f["seconds"], 2),
                "extract_seconds": round(f["extract_seconds"], 2),
                "transform_seconds": round(f["seconds"] - f["extract_seconds"], 2),
                "prs_per_s": round(args.prs / f["seconds"], 1),
                "api_calls": f["api_calls"],
                "calls_per_100_prs": round(100 * f["api_calls"] / max(1, args.prs), 1),
                "answered_304": f["not_modified"],
                "pages_stored": f["pages"],
                "mb_stored": round(f["bytes"] / 1e6, 2),
                "rows": f["rows"],
                "rows_per_s": round(f["rows"] / max(1e-9, f["seconds"] - f["extract_seconds"]), 1),
                "cpu_seconds": round(f["cpu_seconds"], 2),
                "cpu_seconds_per_1000_prs": round(f["cpu_seconds"] * 1000 / max(1, args.prs), 2),
            }
            for name, f in runs.items()
        },
        # The bench process: the steps, the pool and the client (the simulator is a child).
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def report(result: dict[str, Any]) -> None:
    full, again, quiet = (result["runs"][name] for name, _ in RUNS)
    calls = full["calls_per_100_prs"]
    figures = [
        Figure("pull requests/s (full sync)", f"{full['prs_per_s']:,.0f}"),
        Figure(
            "API calls per 100 PRs (full sync)",
            f"{calls:g}",
            target=f"<= {TARGET_CALLS_PER_100:g}",
            ok=calls <= TARGET_CALLS_PER_100,
        ),
        Figure(
            "unchanged re-sync: answered 304",
            f"{again['answered_304']} of {again['api_calls']}",
            target="all",
            ok=again["answered_304"] == again["api_calls"] and again["pages_stored"] == 0,
        ),
        Figure("unchanged re-sync: pull requests/s", f"{again['prs_per_s']:,.0f}"),
        Figure("unchanged incremental: API calls", f"{quiet['api_calls']}"),
        Figure("rows/s into PostgreSQL (full sync transform)", f"{full['rows_per_s']:,.0f}"),
        Figure("CPU seconds per 1,000 PRs (full sync)", f"{full['cpu_seconds_per_1000_prs']:.2f}"),
        Figure("peak RSS (bench process)", f"{result['peak_rss_bytes'] / 2**20:,.0f} MiB"),
    ]
    notes = [
        f"{name}: {r['seconds']}s ({r['extract_seconds']}s extraction, {r['transform_seconds']}s "
        f"transform), {r['api_calls']} calls, {r['pages_stored']} pages, "
        f"{r['mb_stored']} MB stored, {r['rows']:,} new rows, {r['cpu_seconds']}s CPU"
        for name, r in result["runs"].items()
    ]
    title = (
        f"GitHub sync, {result['prs']:,} pull requests ({result['commits_per_pr']} commits, "
        f"{result['reviews_per_pr']} reviews each)"
    )
    print_table(title, figures, notes)


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=("bench", "serve"))
    parser.add_argument("--prs", type=int, default=500)
    parser.add_argument("--commits", type=int, default=10, help="per pull request")
    parser.add_argument("--reviews", type=int, default=3, help="per pull request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4, help="items and pages at a time")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.port, args))
        return
    from etld.logs import configure_logging

    configure_logging("error", "console")
    result = asyncio.run(bench(args))
    write_result("github_sync", result)
    report(result)


if __name__ == "__main__":
    cli()
