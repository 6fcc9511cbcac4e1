"""`etld demo`: a complete local setup on embedded defaults, one command.

Creates the database, applies migrations, seeds a demo tenant with an admin user
(the password is printed), starts the built-in Jira simulator in the same process
as the demo's data source, and runs the daemon with the admin UI on
http://127.0.0.1:3333. The scheduler syncs the simulated site right away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
from typing import Any

import asyncpg
from aiohttp import web

from etld.config import Config, IntegrationConfig, TenantConfig
from etld.daemon import Daemon
from etld.passwords import generate_password, hash_password
from etld.simulator import create_jira_app, generate_site
from etld.store.migrate import ensure_database, migrate
from etld.store.pool import connect
from etld.store.queries import SQL

DEMO_TENANT = "demo"
DEMO_USER = "admin"
DEMO_TOKEN_ENV = "ETLD_DEMO_JIRA_TOKEN"  # noqa: S105 (a variable name, not a secret)


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="set up a demo tenant and run the daemon on embedded defaults",
        description=(
            "Create the database, apply migrations, seed the demo tenant and an admin user "
            "(password printed), serve a simulated Jira site and sync it, then run the "
            "daemon until Ctrl-C."
        ),
    )
    demo.add_argument("--port", type=int, default=None, help="web port (default: web.port)")
    demo.add_argument(
        "--issues", type=int, default=500, help="issues on the simulated Jira site (default 500)"
    )
    demo.add_argument("--seed", type=int, default=1, help="simulated site seed (default 1)")
    demo.set_defaults(func=cmd_demo)


def demo_config(config: Config, port: int | None, jira_url: str) -> Config:
    tenants = (*config.tenants, TenantConfig(name=DEMO_TENANT, tier="premium"))
    jira = IntegrationConfig(
        tenant=DEMO_TENANT,
        name="jira-demo",
        provider="jira",
        base_url=jira_url,
        username="demo@example.com",
        token_env=DEMO_TOKEN_ENV,
        # The simulator listens on loopback, which the outbound URL policy refuses
        # unless an integration allows it explicitly.
        allow_private_network=True,
    )
    web_config = dataclasses.replace(config.web, port=port) if port is not None else config.web
    return dataclasses.replace(
        config, tenants=tenants, integrations=(*config.integrations, jira), web=web_config
    )


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


async def _start_simulator(issues: int, seed: int) -> tuple[web.AppRunner, str]:
    site = await asyncio.to_thread(generate_site, issues, seed)
    runner = web.AppRunner(create_jira_app(site), access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    server = getattr(tcp, "_server", None)
    port = server.sockets[0].getsockname()[1] if server and server.sockets else 0
    return runner, f"http://127.0.0.1:{port}"


def cmd_demo(args: argparse.Namespace) -> int:
    async def main() -> int:
        simulator, jira_url = await _start_simulator(args.issues, args.seed)
        os.environ.setdefault(DEMO_TOKEN_ENV, "demo-token")  # the simulator takes any token
        config = demo_config(args.config_obj, args.port, jira_url)
        try:
            password = await _prepare(config)
            daemon = Daemon(config)
            runner = asyncio.create_task(daemon.run())
            started = asyncio.create_task(daemon.started.wait())
            await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
            if daemon.started.is_set():
                port = daemon.services.get("web_port", config.web.port)
                print(
                    f"\n  etld demo is running\n"
                    f"  admin UI   http://{config.web.host}:{port}\n"
                    f"  login      {DEMO_USER} / {password}  (tenant {DEMO_TENANT})\n"
                    f"  data       simulated Jira site at {jira_url} ({args.issues} issues)\n"
                    f"  stop       Ctrl-C\n",
                    flush=True,
                )
            started.cancel()
            return await runner
        finally:
            await simulator.cleanup()

    return asyncio.run(main())
