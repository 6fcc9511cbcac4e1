"""`etld demo`: a complete local setup on embedded defaults, one command.

Creates the database, applies migrations, seeds a demo tenant with an admin
user (the password is printed), and runs the daemon with the admin UI on
http://127.0.0.1:3333.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
from typing import Any

import asyncpg

from etld.config import Config, TenantConfig
from etld.daemon import Daemon
from etld.passwords import generate_password, hash_password
from etld.store.migrate import ensure_database, migrate
from etld.store.pool import connect
from etld.store.queries import SQL

DEMO_TENANT = "demo"
DEMO_USER = "admin"


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="set up a demo tenant and run the daemon on embedded defaults",
        description=(
            "Create the database, apply migrations, seed the demo tenant and an admin user "
            "(password printed), then run the daemon until Ctrl-C."
        ),
    )
    demo.add_argument("--port", type=int, default=None, help="web port (default: web.port)")
    demo.set_defaults(func=cmd_demo)


def demo_config(config: Config, port: int | None) -> Config:
    tenants = (*config.tenants, TenantConfig(name=DEMO_TENANT, tier="premium"))
    web = dataclasses.replace(config.web, port=port) if port is not None else config.web
    return dataclasses.replace(config, tenants=tenants, web=web)


async def _prepare(config: Config) -> str:
    timeout = config.daemon.connect_timeout
    await ensure_database(config.database.url, timeout=timeout)
    await migrate(config.database.url, timeout=timeout)
    conn = await connect(config.database.url, timeout)
    try:
        await conn.fetchval(SQL["seed.upsert_tenant"], DEMO_TENANT, "premium", True)
        tenant_id = await conn.fetchval(SQL["seed.tenant_id_by_name"], DEMO_TENANT)
        password = generate_password()
        # A fresh password on every demo start: the old one was only ever printed.
        updated = await conn.fetchval(SQL["users.set_password"], DEMO_USER, hash_password(password))
        if updated is None:
            with contextlib.suppress(asyncpg.UniqueViolationError):
                await conn.fetchval(
                    SQL["users.insert_user"],
                    tenant_id,
                    DEMO_USER,
                    "Demo admin",
                    hash_password(password),
                    "admin",
                )
        return password
    finally:
        await conn.close()


def cmd_demo(args: argparse.Namespace) -> int:
    config = demo_config(args.config_obj, args.port)

    async def main() -> int:
        password = await _prepare(config)
        daemon = Daemon(config)
        runner = asyncio.create_task(daemon.run())
        started = asyncio.create_task(daemon.started.wait())
        await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
        if daemon.started.is_set():
            port = daemon.services.get("web_port", config.web.port)
            print(
                f"\n  etld demo is running\n"
                f"  admin UI  http://{config.web.host}:{port}\n"
                f"  login     {DEMO_USER} / {password}  (tenant {DEMO_TENANT})\n"
                f"  stop      Ctrl-C\n",
                flush=True,
            )
        started.cancel()
        return await runner

    return asyncio.run(main())
