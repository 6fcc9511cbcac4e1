"""`etld search "text"`: semantic search from the command line, one hit per line.

The command loads the model and opens the vector store itself. The embedded store
belongs to one process at a time, so while a daemon holds it the command asks that
daemon's API instead (with the internal service key, `security.internal_auth_key`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from etld.config import Config
from etld.store.migrate import migrate
from etld.store.pool import create_pool
from etld.store.queries import SQL

DEFAULT_LIMIT = 10


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "search",
        help="find work items and pull requests by meaning",
        description="Semantic search over a tenant's embedded work items and pull requests.",
    )
    parser.add_argument("text", help="what to look for, in plain words")
    parser.add_argument("--tenant", metavar="NAME", help="tenant name (needed when several)")
    parser.add_argument(
        "--source-type", metavar="T", help="only this source type: JIRA, GITHUB or a custom one"
    )
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N")
    parser.set_defaults(func=cmd_search)


class _Usage(Exception):
    pass


def cmd_search(args: argparse.Namespace) -> int:
    config: Config = args.config_obj
    if not config.embeddings.enabled:
        print("etld: search: embeddings are off (embeddings.enabled = false)", file=sys.stderr)
        return 1
    if not 1 <= args.limit <= 100:
        print("etld: search: --limit must be between 1 and 100", file=sys.stderr)
        return 2
    source_type = args.source_type
    if source_type and source_type.lower() in ("jira", "github"):
        source_type = source_type.upper()
    try:
        hits = asyncio.run(_search(config, args.tenant, args.text, source_type, args.limit))
    except _Usage as exc:
        print(f"etld: search: {exc}", file=sys.stderr)
        return 2
    if not hits:
        print("(no results)")
    for label, score, title in hits:
        print(f"{label}\t{score:.3f}\t{title or ''}")
    return 0


async def _search(
    config: Config, tenant: str | None, text: str, source_type: str | None, limit: int
) -> list[tuple[str, float, str | None]]:
    from etld.vectors.embedder import Embedder
    from etld.vectors.search import search
    from etld.vectors.store import StoreBusy, open_store

    await migrate(config.database.url, timeout=config.daemon.connect_timeout)
    pool = await create_pool(
        config.database.url,
        min_size=1,
        max_size=2,
        timeout=config.daemon.connect_timeout,
        command_timeout=config.database.command_timeout,
    )
    try:
        tenant_id = await _tenant_id(pool, tenant)
        store = open_store(config.qdrant)
        try:
            await store.open()
        except StoreBusy as exc:
            return await _ask_daemon(config, tenant_id, text, source_type, limit, str(exc))
        embedder = await asyncio.to_thread(Embedder.from_config, config.embeddings)
        try:
            hits = await search(pool, store, embedder, tenant_id, text, source_type, limit)
        finally:
            await store.close()
            embedder.close()
        return [(h.label, h.score, h.title) for h in hits]
    finally:
        await pool.close()


async def _tenant_id(pool: asyncpg.Pool, name: str | None) -> int:
    async with pool.acquire() as conn:
        if name is not None:
            found = await conn.fetchval(SQL["seed.tenant_id_by_name"], name)
            if found is None:
                raise _Usage(f"no tenant named {name!r} (etld tenants list)")
            return int(found)
        rows = await conn.fetch(SQL["seed.list_tenants"])
    if len(rows) != 1:
        names = ", ".join(r["name"] for r in rows) or "none yet"
        raise _Usage(f"name the tenant with --tenant (tenants: {names})")
    return int(rows[0]["id"])


async def _ask_daemon(
    config: Config, tenant_id: int, text: str, source_type: str | None, limit: int, why: str
) -> list[tuple[str, float, str | None]]:
    """The running daemon holds the store: ask its search API as the internal service."""
    import aiohttp

    key = config.security.internal_auth_key
    if not key:
        raise _Usage(f"{why}; set security.internal_auth_key to search through the daemon")
    host = config.web.host if config.web.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    params: dict[str, str] = {"q": text, "tenant_id": str(tenant_id), "limit": str(limit)}
    if source_type:
        params["source_type"] = source_type
    url = f"http://{host}:{config.web.port}/app/etl/search"
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params=params, headers={"X-Internal-Auth": key}) as response,
        ):
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Usage(f"{why}, and its API at {url} did not answer: {exc}") from exc
    if response.status != 200:
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        raise _Usage(f"the daemon answered {response.status}: {message or body}")
    return [(r["key"] or r["external_id"], r["score"], r["title"]) for r in body["results"]]
