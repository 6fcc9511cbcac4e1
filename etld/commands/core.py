"""Core subcommands: run, migrate, check-config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from etld.config import Config, ConfigError
from etld.daemon import ALL_ROLES, Daemon
from etld.errors import StartupError, redact_url
from etld.secrets import require_secret_key
from etld.store.migrate import ensure_database, migrate
from etld.store.pool import connect


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the daemon (scheduler, workers and web by default)",
        description="Run the etld daemon in the foreground until SIGTERM/SIGINT.",
    )
    run.add_argument(
        "--role",
        default=",".join(sorted(ALL_ROLES)),
        help="comma-separated roles to run: scheduler,workers,web (default: all)",
    )
    run.set_defaults(func=cmd_run)

    mig = subparsers.add_parser(
        "migrate",
        help="create the database if needed and apply pending migrations",
        description="Apply pending migrations under an advisory lock; safe to run concurrently.",
    )
    mig.set_defaults(func=cmd_migrate)

    check = subparsers.add_parser(
        "check-config",
        help="validate the config file and print every problem with its key path",
        description="Exit 0 when the configuration is valid, 2 with every problem listed.",
    )
    check.set_defaults(func=cmd_check_config, reports_config_errors=True)


def parse_roles(text: str) -> frozenset[str]:
    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = roles - ALL_ROLES
    if not roles or unknown:
        raise SystemExit(
            f"etld: --role: expected a comma-separated subset of {','.join(sorted(ALL_ROLES))}, "
            f"got {text!r}"
        )
    return roles


def run_daemon(config: Config, roles: frozenset[str] = ALL_ROLES) -> int:
    async def main() -> int:
        await _check_secret_key(config)
        daemon = Daemon(config, roles)
        return await daemon.run()

    return asyncio.run(main())


async def _check_secret_key(config: Config) -> None:
    """Encrypted credentials in the database need ETLD_SECRET_KEY (a one-line exit 1)."""
    if config.security.secret_key:
        return
    try:
        conn = await connect(config.database.url, config.daemon.connect_timeout)
    except StartupError:
        return  # the daemon reports an unreachable database itself, the usual way
    try:
        await require_secret_key(conn, config.security.secret_key)
    finally:
        await conn.close()


def cmd_run(args: argparse.Namespace) -> int:
    return run_daemon(args.config_obj, parse_roles(args.role))


def cmd_migrate(args: argparse.Namespace) -> int:
    config: Config = args.config_obj
    timeout = config.daemon.connect_timeout

    async def main() -> list[str]:
        await ensure_database(config.database.url, timeout=timeout)
        return await migrate(config.database.url, timeout=timeout)

    applied = asyncio.run(main())
    target = redact_url(config.database.url)
    if applied:
        print(f"applied {len(applied)} migration(s) to {target}: {', '.join(applied)}")
    else:
        print(f"{target} is up to date")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    result = args.config_obj
    if isinstance(result, ConfigError):
        for problem in result.problems:
            print(problem, file=sys.stderr)
        print(f"{len(result.problems)} problem(s) found", file=sys.stderr)
        return 2
    config: Config = result
    where = config.source_path or "built-in defaults (no config file)"
    print(f"configuration OK: {where}")
    print(f"  database   {redact_url(config.database.url)}")
    print(f"  rabbitmq   {redact_url(config.rabbitmq.url)} ({config.rabbitmq.queue_type} queues)")
    print(f"  web        http://{config.web.host}:{config.web.port}")
    print(f"  tiers      {', '.join(config.pipeline.tiers)}")
    print(f"  tenants    {len(config.tenants)}, integrations {len(config.integrations)}")
    missing = [
        f"{i.tenant}/{i.name}: environment variable {i.token_env} is not set"
        for i in config.integrations
        if i.token_env and i.token() is None
    ]
    for line in missing:
        print(f"  warning: {line}")
    return 0
