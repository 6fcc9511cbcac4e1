"""`etld dlq`: list, show, requeue and purge dead letters."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson

from etld import dlq
from etld.broker.session import broker_session
from etld.config import Config
from etld.errors import EtldError
from etld.store.pool import create_pool

T = TypeVar("T")
REASON_WIDTH = 70


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="inspect, requeue or purge dead letters",
        description=(
            "Dead letters are messages etld gave up on: malformed, rejected by a handler, or "
            "still failing after max_retries attempts. Each is stored in PostgreSQL "
            "(dead_letters) with its reason, error and original bytes; the etl.failed queue "
            "keeps copies for 24 hours."
        ),
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="list dead letters, newest first")
    _filters(listing)
    listing.add_argument(
        "--status",
        choices=(*dlq.STATUSES, "all"),
        default="dead",
        help="which dead letters (default: dead, i.e. not requeued or purged)",
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="one dead letter in full: error, traceback, headers, body")
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_show)

    requeue = sub.add_parser(
        "requeue",
        help="publish dead letters back to their original queue",
        description=(
            "Publish the original message back to the queue it died on, with a fresh attempt "
            "count, and mark it requeued. Give ids, or --all (optionally narrowed by --tenant "
            "and --queue)."
        ),
    )
    requeue.add_argument("ids", nargs="*", type=int, metavar="ID")
    requeue.add_argument("--all", action="store_true", help="every dead letter (after filters)")
    _filters(requeue)
    requeue.set_defaults(func=cmd_requeue)

    purge = sub.add_parser(
        "purge",
        help="mark dead letters purged (and empty etl.failed)",
        description=(
            "Mark dead letters purged; their rows stay for history. Without filters the "
            "etl.failed queue is emptied too (its copies cannot be selected by tenant or queue)."
        ),
    )
    _filters(purge)
    purge.add_argument(
        "--keep-queue", action="store_true", help="leave the etl.failed queue untouched"
    )
    purge.set_defaults(func=cmd_purge)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", help="only this tenant (id or name)")
    parser.add_argument("--queue", help="only messages that died on this queue")


@contextlib.asynccontextmanager
async def _database(config: Config) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(
        config.database.url,
        min_size=1,
        max_size=2,
        timeout=config.daemon.connect_timeout,
        command_timeout=config.database.command_timeout,
    )
    try:
        yield pool
    finally:
        await pool.close()


def _run(work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await work()

    return asyncio.run(main())


async def _tenant(pool: asyncpg.Pool, text: str | None) -> int | None:
    if text is None:
        return None
    tenant_id = await dlq.resolve_tenant(pool, text)
    if tenant_id is None:
        raise EtldError(f"no tenant named {text!r}")
    return tenant_id


def _row(letter: dlq.DeadLetter) -> list[str]:
    reason = letter.reason.replace("\n", " ")
    if len(reason) > REASON_WIDTH:
        reason = reason[: REASON_WIDTH - 3] + "..."
    return [
        str(letter.id),
        letter.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "" if letter.tenant_id is None else str(letter.tenant_id),
        letter.queue,
        letter.message_type or "",
        str(letter.attempts),
        letter.status,
        reason,
    ]


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    config: Config = args.config_obj

    async def work() -> list[dlq.DeadLetter]:
        async with _database(config) as pool:
            return await dlq.list_dead_letters(
                pool,
                tenant_id=await _tenant(pool, args.tenant),
                queue=args.queue,
                status=None if args.status == "all" else args.status,
                limit=args.limit,
            )

    letters = _run(work)
    if args.json:
        for letter in letters:
            print(orjson.dumps(letter.summary()).decode())
        return 0
    header = ["id", "created", "tenant", "queue", "type", "attempts", "status", "reason"]
    _print_table(header, [_row(letter) for letter in letters])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config: Config = args.config_obj

    async def work() -> dlq.DeadLetter | None:
        async with _database(config) as pool:
            return await dlq.get_dead_letter(pool, args.id)

    letter = _run(work)
    if letter is None:
        print(f"etld: no dead letter {args.id}", file=sys.stderr)
        return 1
    summary = letter.summary()
    for key in ("id", "status", "created_at", "tenant_id", "job_id", "run_id", "queue"):
        print(f"{key + ':':<15}{summary[key]}")
    for key in ("routing_key", "stage", "message_type", "attempts", "requeue_count", "reason"):
        print(f"{key + ':':<15}{summary[key]}")
    print(f"{'error:':<15}{letter.error or ''}")
    print("headers:")
    print(orjson.dumps(letter.headers, option=orjson.OPT_INDENT_2).decode())
    body = dlq.decode_body(letter)
    print("body:")
    if body is None:
        print(repr(letter.body[:2000]))
    else:
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    if letter.traceback:
        print("traceback:")
        print(letter.traceback.rstrip())
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    config: Config = args.config_obj
    if bool(args.ids) == bool(args.all):
        print("etld: give dead letter ids, or --all", file=sys.stderr)
        return 2
    if args.ids and (args.tenant or args.queue):
        print("etld: --tenant and --queue only narrow --all", file=sys.stderr)
        return 2

    async def work() -> dlq.RequeueResult:
        async with _database(config) as pool, broker_session(config) as (_, publisher):
            return await dlq.requeue(
                pool,
                publisher,
                args.ids or None,
                all_dead=args.all,
                tenant_id=await _tenant(pool, args.tenant),
                queue=args.queue,
            )

    result = _run(work)
    print(f"requeued {len(result.requeued)} dead letter(s)")
    for dead_id in result.skipped:
        print(f"  {dead_id}: skipped (no such dead letter, or already requeued or purged)")
    for dead_id, error in result.failed.items():
        print(f"  {dead_id}: not requeued: {error}", file=sys.stderr)
    return 1 if result.failed or result.skipped else 0


def cmd_purge(args: argparse.Namespace) -> int:
    config: Config = args.config_obj
    filtered = bool(args.tenant or args.queue)

    async def work() -> dlq.PurgeResult:
        async with _database(config) as pool:
            tenant_id = await _tenant(pool, args.tenant)
            if filtered or args.keep_queue:
                return await dlq.purge(pool, tenant_id=tenant_id, queue=args.queue)
            async with broker_session(config) as (broker, _):
                return await dlq.purge(pool, broker=broker)

    result = _run(work)
    print(f"purged {result.rows} dead letter(s)")
    if result.broker_messages is not None:
        print(f"removed {result.broker_messages} message(s) from etl.failed")
    return 0
