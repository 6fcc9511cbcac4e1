"""`etld workers`: queue health and worker status, and restarting consumers without a restart."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from etld.broker.control import NoDaemons, restart_workers, workers_status
from etld.broker.health import queue_health
from etld.broker.session import broker_session
from etld.config import STAGES, Config


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "workers",
        help="queue health, worker status, restart consumers",
        description=(
            "Talks to every running etld daemon (on any host) through the etl.control "
            "exchange of RabbitMQ."
        ),
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    status = sub.add_parser(
        "status",
        help="depth, consumers and ready/unacked counts per queue; workers per daemon",
        description=(
            "Queue numbers come from AMQP passive declares (no unacked count), or from the "
            "management API when rabbitmq.management_url is set."
        ),
    )
    status.add_argument("--json", action="store_true", help="one JSON document")
    status.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for daemons (default: 5)"
    )
    status.set_defaults(func=cmd_status)

    restart = sub.add_parser(
        "restart",
        help="restart the consumers of a stage, or of all stages, in every daemon",
        description=(
            "Each daemon cancels the selected consumers, lets in-flight handlers finish and "
            "ack, then consumes again on fresh channels. The daemons keep running."
        ),
    )
    restart.add_argument("--stage", choices=("jobs", *STAGES), help="only this stage")
    restart.add_argument("--tier", help="only this tier")
    restart.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for in-flight handlers to finish (default: 120)",
    )
    restart.set_defaults(func=cmd_restart)


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    print("  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def cmd_status(args: argparse.Namespace) -> int:
    config: Config = args.config_obj

    async def work() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with broker_session(config) as (broker, publisher):
            queues = [item.as_dict() for item in await queue_health(broker, config)]
            try:
                daemons = await workers_status(broker, publisher, timeout=args.timeout)
            except NoDaemons:
                daemons = []
            return queues, daemons

    queues, daemons = asyncio.run(work())
    if args.json:
        print(orjson.dumps({"queues": queues, "daemons": daemons}).decode())
        return 0
    _table(
        ["queue", "ready", "unacked", "consumers", "depth"],
        [
            [q["name"], q["ready"], q["unacked"], q["consumers"], q["depth"]]
            if q["exists"]
            else [q["name"], "missing", None, None, None]
            for q in queues
        ],
    )
    if not daemons:
        print("\nno running daemon with the workers role answered")
        return 0
    for daemon in daemons:
        print(f"\ndaemon {daemon['daemon']}")
        if not daemon.get("ok", False):
            print(f"  error: {daemon.get('error')}")
            continue
        _table(
            ["stage", "tier", "queue", "concurrency", "state", "in_flight", "processed",
             "restarts", "handler"],
            [
                [w["stage"], w["tier"], w["queue"], w["concurrency"], w["state"],
                 w["in_flight"], w["processed"], w["restarts"], "yes" if w["handler"] else "no"]
                for w in daemon["workers"]
            ],
        )  # fmt: skip
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    config: Config = args.config_obj
    if args.tier is not None and args.tier not in config.pipeline.tiers:
        print(f"etld: unknown tier {args.tier!r} (pipeline.tiers)", file=sys.stderr)
        return 2

    async def work() -> list[dict[str, Any]]:
        async with broker_session(config) as (broker, publisher):
            return await restart_workers(
                broker, publisher, stage=args.stage, tier=args.tier, timeout=args.timeout
            )

    try:
        results = asyncio.run(work())
    except NoDaemons as exc:
        print(f"etld: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for result in results:
        if result.get("ok"):
            print(f"{result['daemon']}: restarted {len(result['restarted'])} consumer(s)")
        else:
            failed += 1
            print(f"{result['daemon']}: {result.get('error')}", file=sys.stderr)
    return 1 if failed else 0
