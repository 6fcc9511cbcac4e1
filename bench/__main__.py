"""`python -m bench`: run every benchmark present, one process each, then the end-to-end report.

    python -m bench [--issues 100000] [--prs 5000] [--only NAME ...] [--report-only]

`--issues` sizes the Jira sync bench (100,000 by default, as `make bench` measures it; on two
cores that takes several minutes, so `--issues 10000` is the quick figure) and `--prs` the
GitHub sync bench. Modules are run in a fixed order; a module not in this checkout is
skipped, one that fails does not stop the others, and the exit code is 1 when any failed.
Then bench/report.py gathers the latest result of every bench into bench/results/report.json
and report.txt (see there); `--report-only` rebuilds that report without running anything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import report

ORDER = ("jira_sync", "queue", "github_sync", "embeddings")
HERE = Path(__file__).resolve().parent


def module_args(name: str, args: argparse.Namespace) -> list[str]:
    if name == "jira_sync":
        return ["--issues", str(args.issues)]
    if name == "github_sync":
        return ["--prs", str(args.prs)]
    return []


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench", description=summary)
    parser.add_argument("--issues", type=int, default=100_000, help="Jira issues (100000)")
    parser.add_argument("--prs", type=int, default=5000, help="GitHub pull requests (5000)")
    parser.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME", help="these only")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report only")
    args = parser.parse_args(argv)
    if args.report_only:
        report.main()
        return 0
    # Truncated to the second, as results are stamped: a result of this run is never older.
    started = datetime.now(UTC).replace(microsecond=0)
    outcomes: dict[str, str] = {}
    for name in ORDER:
        if args.only and name not in args.only:
            outcomes[name] = "not selected"
            continue
        if not (HERE / f"{name}.py").exists():
            outcomes[name] = "skipped (not present)"
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        began = time.monotonic()
        command = [sys.executable, "-m", f"bench.{name}", *module_args(name, args)]
        code = subprocess.run(command, cwd=HERE.parent).returncode
        took = time.monotonic() - began
        outcomes[name] = f"ok in {took:.0f}s" if code == 0 else f"FAILED (exit {code})"
    print("\n=== summary ===")
    for name, outcome in outcomes.items():
        print(f"  {name:<12} {outcome}")
    print("\n=== report ===")
    report.main(outcomes, started)
    return 1 if any(o.startswith("FAILED") for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
