"""`python -m bench`: run every benchmark present, one process each, and report their ends.

Modules are run in a fixed order; a module not in this checkout is skipped, one that fails
does not stop the others, and the exit code is 1 when any failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ORDER = ("jira_sync", "queue", "github_sync", "embeddings")
HERE = Path(__file__).resolve().parent


def main() -> int:
    outcomes: list[tuple[str, str]] = []
    for name in ORDER:
        if not (HERE / f"{name}.py").exists():
            outcomes.append((name, "skipped (not present)"))
            continue
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=HERE.parent).returncode
        took = time.monotonic() - started
        outcomes.append((name, f"ok in {took:.0f}s" if code == 0 else f"FAILED (exit {code})"))
    print("\n=== summary ===")
    for name, outcome in outcomes:
        print(f"  {name:<12} {outcome}")
    return 1 if any(o.startswith("FAILED") for _, o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
