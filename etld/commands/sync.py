"""`etld sync`: run one integration's job now, in the foreground, and summarise it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from etld.config import Config
from etld.jobs.status import STAGES
from etld.logs import configure_logging
from etld.sync import SyncReport, SyncRequest, UnknownTarget, run_sync

MiB = 1024 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sync",
        help="run an integration's job now through the pipeline and wait for it",
        description=(
            "Start a run of the integration's job, process it with workers started in this "
            "process (other running daemons may share the work), print progress as the job "
            "status changes, and summarise the run. Exit 0 when the run FINISHED, 1 when it "
            "FAILED, 2 when the tenant or integration does not exist."
        ),
    )
    parser.add_argument("--tenant", required=True, help="tenant name")
    parser.add_argument("--integration", required=True, help="integration name")
    parser.add_argument(
        "--full", action="store_true", help="full sync (also soft-deletes what vanished)"
    )
    parser.add_argument(
        "--retransform",
        action="store_true",
        help="rebuild the tables from the stored raw pages, without calling the source",
    )
    parser.add_argument(
        "--custom-fields",
        action="store_true",
        help="discover the site's custom fields first (Jira)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up (and fail the run) after this long (default: wait for the end)",
    )
    parser.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    config: Config = args.config_obj
    if args.timeout is not None and args.timeout <= 0:
        print("etld: sync: --timeout must be > 0", file=sys.stderr)
        return 2
    if args.log_level is None:
        # Progress lines tell the story; the daemon's info logs would drown them.
        configure_logging("warning", config.logging.format)
    request = SyncRequest(
        tenant=args.tenant,
        integration=args.integration,
        full=args.full,
        retransform=args.retransform,
        custom_fields=args.custom_fields,
        timeout=args.timeout,
    )

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        report = asyncio.run(run_sync(config, request, say=say, handle_signals=True))
    except UnknownTarget as exc:
        print(f"etld: sync: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(report):
        print(line)
    if report.exit_code and report.error:
        print(f"etld: sync: run {report.outcome}: {report.error}", file=sys.stderr)
    return report.exit_code


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n / 1024:.1f} KiB"


def summary_lines(report: SyncReport) -> list[str]:
    """The report as the readable block printed at the end of `etld sync`."""
    target = f"{report.tenant}/{report.integration} ({report.provider})"
    if report.run_id is None:
        return [f"{target}: no run started: {report.error}"]
    kind = "full sync" if report.full_sync else report.trigger
    out = [
        "",
        f"run {report.run_id} of {target}: {report.outcome} in "
        f"{report.duration_seconds:.1f}s ({kind})",
    ]
    if report.error:
        out.append(f"  error          {report.error}")
    records = " · ".join(f"{s} {report.records.get(s, 0):,}" for s in STAGES)
    out += [
        f"  api calls      {report.api_calls:,}",
        f"  records        {records}",
        f"  raw pages      {report.pages:,} ({_size(report.page_bytes)})",
        f"  dead letters   {len(report.dead_letters)}",
    ]
    for letter in report.dead_letters:
        out.append(f"    #{letter['id']} {letter['queue']}: {letter['reason']}")
    if report.peak_memory_bytes:
        out.append(f"  peak memory    {_size(report.peak_memory_bytes)}")
    if report.steps:
        out.append("  steps (items done/created, records)")
        width = max(len(str(s["display_name"])) for s in report.steps)
        for step in report.steps:
            cells = []
            for stage in STAGES:
                c = step[stage]
                cells.append(f"{stage} {c['state']} {c['done']}/{c['created']} ({c['records']:,})")
            out.append(f"    {step['order']}. {step['display_name']:<{width}}  {'  '.join(cells)}")
    out.append(f"  rows of {report.tenant}/{report.integration}")
    width = max((len(name) for name in report.tables), default=0)
    for name, count in report.tables.items():
        extra = f" ({count['deleted']:,} soft-deleted)" if count["deleted"] else ""
        out.append(f"    {name:<{width}}  {count['rows']:>9,}{extra}")
    return out
