"""Administrative subcommands: tenants, users, integrations."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from etld.config import Config
from etld.passwords import generate_password, hash_password
from etld.store.migrate import migrate
from etld.store.pool import connect
from etld.store.queries import SQL

T = TypeVar("T")


def register(subparsers: Any) -> None:
    tenants = subparsers.add_parser("tenants", help="list or add tenants")
    tsub = tenants.add_subparsers(dest="action", metavar="ACTION", required=True)
    tlist = tsub.add_parser("list", help="list tenants with their tier and counts")
    tlist.set_defaults(func=cmd_tenants_list)
    tadd = tsub.add_parser("add", help="add or update a tenant")
    tadd.add_argument("name")
    tadd.add_argument("--tier", default="free", help="queue tier (default: free)")
    tadd.set_defaults(func=cmd_tenants_add)

    users = subparsers.add_parser("users", help="list or add admin UI users")
    usub = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    ulist = usub.add_parser("list", help="list users")
    ulist.add_argument("--tenant", help="only this tenant's users")
    ulist.set_defaults(func=cmd_users_list)
    uadd = usub.add_parser(
        "add",
        help="create a user (prints a generated password unless --password-stdin)",
        description="Create a user of a tenant. The first admin of a tenant is made this way.",
    )
    uadd.add_argument("username")
    uadd.add_argument("--tenant", required=True, help="tenant name")
    uadd.add_argument("--role", choices=("admin", "viewer"), default="admin")
    uadd.add_argument("--display-name", default=None)
    uadd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    uadd.set_defaults(func=cmd_users_add)

    integrations = subparsers.add_parser("integrations", help="list integrations")
    isub = integrations.add_subparsers(dest="action", metavar="ACTION", required=True)
    ilist = isub.add_parser("list", help="list integrations (credentials never shown)")
    ilist.add_argument("--tenant", help="only this tenant's integrations")
    ilist.set_defaults(func=cmd_integrations_list)


def with_db(config: Config, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        await migrate(config.database.url, timeout=config.daemon.connect_timeout)
        conn = await connect(config.database.url, config.daemon.connect_timeout)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r[c] is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def cmd_tenants_list(args: argparse.Namespace) -> int:
    rows = with_db(args.config_obj, lambda c: c.fetch(SQL["seed.list_tenants"]))
    print_table([dict(r) for r in rows], ["id", "name", "tier", "active", "integrations", "users"])
    return 0


def cmd_tenants_add(args: argparse.Namespace) -> int:
    config: Config = args.config_obj
    if args.tier not in config.pipeline.tiers:
        print(f"etld: --tier: expected one of {', '.join(config.pipeline.tiers)}", file=sys.stderr)
        return 2

    async def work(conn: asyncpg.Connection) -> int:
        await conn.fetchval(SQL["seed.upsert_tenant"], args.name, args.tier, True)
        return int(await conn.fetchval(SQL["seed.tenant_id_by_name"], args.name))

    tenant_id = with_db(config, work)
    print(f"tenant {args.name} (id {tenant_id}, tier {args.tier})")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    rows = with_db(args.config_obj, lambda c: c.fetch(SQL["users.list_users"], args.tenant))
    print_table([dict(r) for r in rows], ["id", "tenant", "username", "role", "active"])
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = (
            sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
        )
        generated = False
    else:
        password, generated = generate_password(), True
    if not password:
        print("etld: users add: empty password", file=sys.stderr)
        return 2

    async def work(conn: asyncpg.Connection) -> str | None:
        tenant_id = await conn.fetchval(SQL["seed.tenant_id_by_name"], args.tenant)
        if tenant_id is None:
            return f"no tenant named {args.tenant!r} (etld tenants list)"
        try:
            await conn.fetchval(
                SQL["users.insert_user"],
                tenant_id,
                args.username,
                args.display_name,
                hash_password(password),
                args.role,
            )
        except asyncpg.UniqueViolationError:
            return f"a user named {args.username!r} already exists"
        return None

    problem = with_db(args.config_obj, work)
    if problem:
        print(f"etld: users add: {problem}", file=sys.stderr)
        return 1
    print(f"user {args.username} ({args.role}) created for tenant {args.tenant}")
    if generated:
        print(f"password: {password}")
    return 0


def cmd_integrations_list(args: argparse.Namespace) -> int:
    rows = with_db(args.config_obj, lambda c: c.fetch(SQL["seed.list_integrations"], args.tenant))
    print_table([dict(r) for r in rows], ["id", "tenant", "name", "provider", "base_url", "active"])
    return 0
