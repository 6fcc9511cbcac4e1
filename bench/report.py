"""The end-to-end report: every bench's latest figures in one table, each next to its limit.

    python -m bench.report        # rebuild from bench/results/*.json without running anything

`python -m bench` calls this after its modules. It reads the result of each bench present in
bench/results/ (whatever its age: each figure carries the date it was measured), and writes
bench/results/report.json and bench/results/report.txt (the table as printed):

- Jira sync: end-to-end wall time, issues/s end to end and per stage, API calls per 1,000
  issues, rows/s into PostgreSQL, CPU seconds per 1,000 issues, peak RSS;
- GitHub sync: the same for pull requests;
- queue: messages/s through etld's publisher and runner;
- embeddings (when that bench exists): embeddings/s.

Each etld figure that has a measured limit on the same machine is shown as a ratio of it:
Jira against orjson parsing plus COPY of the same data, rows/s against COPY of the same rows,
the queue against raw aiormq publish + consume, embeddings against raw onnxruntime.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, MiB

BENCHES = ("jira_sync", "github_sync", "queue", "embeddings")
SIZE_NAMES = {"prs": "pull requests"}


@dataclass(frozen=True)
class Row:
    """One figure of the report."""

    bench: str
    figure: str
    etld: float
    unit: str
    limit: float | None = None
    limit_name: str = ""
    target: str = ""

    @property
    def ratio(self) -> float | None:
        return None if not self.limit else self.etld / self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


# -- reading the results ---------------------------------------------------------------------


def load_results(directory: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """The latest result of each bench present, with its measuring date in `at`."""
    found: dict[str, dict[str, Any]] = {}
    for name in BENCHES:
        path = directory / f"{name}.json"
        if not path.exists():
            continue
        result: dict[str, Any] = json.loads(path.read_text())
        if "at" not in result:  # a bench that does not stamp its result: the file's date
            stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            result["at"] = stamp.isoformat(timespec="seconds")
        found[name] = result
    return found


def jira_rows(r: Mapping[str, Any]) -> list[Row]:
    hot = r["measured_run"]
    rows = [
        Row("jira_sync", "end-to-end wall time", hot["run_seconds"], "s"),
        Row(
            "jira_sync",
            "issues/s end to end",
            r["etld_issues_per_s"],
            "issues/s",
            r["limit_issues_per_s"],
            "orjson parse + COPY",
            ">= 50% of limit",
        ),
    ]
    for stage, per_s in r.get("stage_issues_per_s", {}).items():
        rows.append(Row("jira_sync", f"issues/s, {stage} stage", per_s, "issues/s"))
    rows.append(
        Row("jira_sync", "API calls per 1,000 issues", r["api_calls_per_1000"], "", target="<= 15")
    )
    if "etld_rows_per_s" in r:
        rows.append(
            Row(
                "jira_sync",
                "rows/s into PostgreSQL",
                r["etld_rows_per_s"],
                "rows/s",
                r["limit_rows_per_s"],
                "COPY of the same rows",
            )
        )
    if "cpu_seconds_per_1000" in r:
        rows.append(
            Row("jira_sync", "CPU seconds per 1,000 issues", r["cpu_seconds_per_1000"], "s")
        )
    rows.append(Row("jira_sync", "peak RSS", r["peak_rss_bytes"] / MiB, "MiB", target="<= 512 MiB"))
    unchanged = r.get("cold_run", {}).get("unchanged_incremental")
    if unchanged:
        per_project = unchanged["api_calls"] / max(unchanged["projects"], 1)
        rows += [
            Row("jira_sync", "unchanged incremental: calls/project", per_project, "", target="<=3"),
            Row(
                "jira_sync",
                "unchanged incremental: re-embedded",
                unchanged["work_items_written"],
                "items",
                target="0",
            ),
        ]
    return rows


def github_rows(r: Mapping[str, Any]) -> list[Row]:
    full = r["runs"]["full sync"]
    quiet = r["runs"]["unchanged incremental"]
    prs = r["prs"]
    rows = [
        Row("github_sync", "end-to-end wall time (full sync)", full["seconds"], "s"),
        Row("github_sync", "PRs/s end to end", full["prs_per_s"], "PRs/s"),
    ]
    for stage, key in (("extraction", "extract_seconds"), ("transform", "transform_seconds")):
        if full[key] > 0:
            rows.append(Row("github_sync", f"PRs/s, {stage} stage", prs / full[key], "PRs/s"))
    rows.append(
        Row(
            "github_sync",
            "API calls per 1,000 PRs",
            full["calls_per_100_prs"] * 10,
            "",
            target="<= 2,150",
        )
    )
    rows.append(Row("github_sync", "API calls, unchanged incremental", quiet["api_calls"], ""))
    if "rows_per_s" in full:
        rows.append(Row("github_sync", "rows/s into PostgreSQL", full["rows_per_s"], "rows/s"))
    if "cpu_seconds_per_1000_prs" in full:
        rows.append(
            Row("github_sync", "CPU seconds per 1,000 PRs", full["cpu_seconds_per_1000_prs"], "s")
        )
    if "peak_rss_bytes" in r:
        rows.append(Row("github_sync", "peak RSS", r["peak_rss_bytes"] / MiB, "MiB"))
    return rows


def queue_rows(r: Mapping[str, Any]) -> list[Row]:
    return [
        Row(
            "queue",
            "messages/s (publish + consume)",
            r["etld_msgs_per_s"],
            "msg/s",
            r["raw_msgs_per_s"],
            "raw aiormq",
        )
    ]


def embeddings_rows(r: Mapping[str, Any]) -> list[Row]:
    rows = []
    for variant in ("fp32", "int8"):
        if variant in r:
            v = r[variant]
            rows.append(
                Row(
                    "embeddings",
                    f"{variant} embeddings/s",
                    v["etld_per_s"],
                    "emb/s",
                    v["raw_onnxruntime_per_s"],
                    "raw onnxruntime",
                    ">= 90% of limit" if variant == "fp32" else "",
                )
            )
    return rows


ROWS: dict[str, Callable[[Mapping[str, Any]], list[Row]]] = {
    "jira_sync": jira_rows,
    "github_sync": github_rows,
    "queue": queue_rows,
    "embeddings": embeddings_rows,
}


# -- the report ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_bytes": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def build(
    results: Mapping[str, dict[str, Any]],
    outcomes: Mapping[str, str] | None = None,
    started: datetime | None = None,
) -> dict[str, Any]:
    """The report: machine, each bench's date and size, and every figure."""
    benches: dict[str, Any] = {}
    rows: list[Row] = []
    for name in BENCHES:
        result = results.get(name)
        entry: dict[str, Any] = {"outcome": (outcomes or {}).get(name, "not run now")}
        if result is not None:
            at = datetime.fromisoformat(result["at"])
            entry["measured_at"] = result["at"]
            # Whether this invocation measured it (None when only the report was rebuilt).
            entry["fresh"] = None if started is None else at >= started
            entry["size"] = {
                k: result[k] for k in ("issues", "prs", "messages", "texts") if k in result
            }
            if "load_average" in result:
                entry["load_average"] = result["load_average"]
            rows.extend(ROWS[name](result))
        benches[name] = entry
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "benches": benches,
        "figures": [row.as_dict() for row in rows],
    }


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average"])
    lines = [
        f"etld benchmarks, report of {report['at']}",
        f"machine: {m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), "
        f"{m['memory_bytes'] / 2**30:.0f} GiB, Python {m['python']}; "
        f"load average now {load}",
        "",
    ]
    header = ("bench", "figure", "etld", "limit", "ratio", "target")
    table: list[tuple[str, ...]] = []
    for f in report["figures"]:
        value = f"{_number(f['etld'])} {f['unit']}".strip()
        limit = f"{_number(f['limit'])} ({f['limit_name']})" if f["limit"] else ""
        ratio = f"{f['ratio']:.0%}" if f["ratio"] is not None else ""
        table.append((f["bench"], f["figure"], value, limit, ratio, f["target"]))
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    lines.append("  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines.append("")
    for name, entry in report["benches"].items():
        if "measured_at" not in entry:
            lines.append(f"{name}: no result ({entry['outcome']})")
            continue
        size = ", ".join(f"{v:,} {SIZE_NAMES.get(k, k)}" for k, v in entry["size"].items())
        age = ", from an earlier run" if entry["fresh"] is False else ""
        lines.append(
            f"{name}: measured {entry['measured_at']}{age}"
            + (f" ({size})" if size else "")
            + f"; {entry['outcome']}"
        )
    return "\n".join(line.rstrip() for line in lines) + "\n"


def write(report: Mapping[str, Any], directory: Path = RESULTS) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    as_json, as_text = directory / "report.json", directory / "report.txt"
    as_json.write_text(json.dumps(report, indent=2) + "\n")
    as_text.write_text(render(report))
    return as_json, as_text


def main(outcomes: Mapping[str, str] | None = None, started: datetime | None = None) -> None:
    report = build(load_results(), outcomes, started)
    as_json, as_text = write(report)
    print(render(report), end="")
    print(f"\nwritten to {as_json} and {as_text}")


if __name__ == "__main__":
    main()
