"""API token subcommands: add (the token is printed once), list, revoke."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import asyncpg

from etld.commands.admin import print_table, with_db
from etld.store.queries import SQL
from etld.web.auth import new_token, token_hash


def register(subparsers: Any) -> None:
    tokens = subparsers.add_parser("tokens", help="add, list or revoke API tokens")
    sub = tokens.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser(
        "add",
        help="create a token for a tenant and print it once",
        description="Create an API token (Authorization: Bearer <token>). Only its hash is "
        "stored, so the token is printed now and never again.",
    )
    add.add_argument("--tenant", required=True, help="tenant name")
    add.add_argument("--name", required=True, help="what the token is for")
    add.add_argument("--role", choices=("admin", "viewer"), default="viewer")
    add.set_defaults(func=cmd_tokens_add)
    lst = sub.add_parser("list", help="list tokens (never their values)")
    lst.add_argument("--tenant", help="only this tenant's tokens")
    lst.set_defaults(func=cmd_tokens_list)
    revoke = sub.add_parser("revoke", help="revoke a token by id (kept for audit)")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_tokens_revoke)


def cmd_tokens_add(args: argparse.Namespace) -> int:
    token = new_token()

    async def work(conn: asyncpg.Connection) -> tuple[int | None, str | None]:
        tenant_id = await conn.fetchval(SQL["seed.tenant_id_by_name"], args.tenant)
        if tenant_id is None:
            return None, f"no tenant named {args.tenant!r} (etld tenants list)"
        token_id = await conn.fetchval(
            SQL["auth.insert_token"], tenant_id, args.name, token_hash(token), args.role
        )
        return int(token_id), None

    token_id, problem = with_db(args.config_obj, work)
    if problem:
        print(f"etld: tokens add: {problem}", file=sys.stderr)
        return 1
    print(f"token {token_id} ({args.name}, {args.role}) created for tenant {args.tenant}")
    print(f"token: {token}")
    print("it is shown only now; store it somewhere safe", file=sys.stderr)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    rows = with_db(args.config_obj, lambda c: c.fetch(SQL["auth.list_tokens"], args.tenant))
    columns = ["id", "tenant", "name", "role", "created_at", "last_used_at", "revoked_at"]
    print_table([dict(r) for r in rows], columns)
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    row = with_db(args.config_obj, lambda c: c.fetchrow(SQL["auth.revoke_token"], args.id))
    if row is None:
        print(f"etld: tokens revoke: no token with id {args.id}", file=sys.stderr)
        return 1
    print(f"token {row['id']} ({row['name']}) revoked at {row['revoked_at'].isoformat()}")
    return 0
