"""The summary table of bench/faults.md, from the figures the fault suite's long forms wrote.

    make test-faults                        # ROADIE_FAULTS=long: bench/results/faults/*.json
    .venv/bin/python bench/faults_table.py  # prints the Markdown table

One row per test and engine: jobs run, faults injected, extra executions (starts beyond one per
job), recovery p50 / p99 (fault to jobs runnable again, or database back to processing) and the
invariants the test checked. A field a test did not record shows as "-".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "faults"
ENGINES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}


def faults_of(figures: dict[str, Any]) -> str:
    """What was injected, from whichever counter the test kept."""
    if figures.get("backends_terminated"):
        return f"{figures['backends_terminated']:,} connections killed"
    for key, what in (("faults", "process faults"), ("kills", "kills")):
        if isinstance(figures.get(key), int) and figures[key]:
            return f"{figures[key]:,} {what}"
    if figures.get("down_s"):
        return f"server down {figures['down_s']:g} s"
    if figures.get("blackhole_s"):
        return f"latency, then blackhole {figures['blackhole_s']:g} s"
    if figures.get("cut_s"):
        return f"host cut off {figures['cut_s']:g} s"
    if figures.get("skews"):
        skews = figures["skews"]
        return "clocks " + ", ".join(f"{seconds:+g} s" for seconds in dict(skews).values())
    if figures.get("hold_s"):
        return f"snapshot held {figures['hold_s']:g} s"
    if figures.get("old_jobs"):
        return f"pruning {figures['old_jobs']:,} old jobs"
    return "-"


def recovery_of(figures: dict[str, Any]) -> str:
    recovery = figures.get("recovery_s") or {}
    if not recovery.get("count"):
        return "-"
    return f"{recovery['p50']:.2f} s / {recovery['p99']:.2f} s"


def row(figures: dict[str, Any]) -> list[str]:
    jobs = figures.get("jobs") or figures.get("old_jobs")
    extra = figures.get("extra_executions")
    return [
        figures["test"],
        ENGINES.get(figures.get("backend", ""), figures.get("backend", "-")),
        f"{jobs:,}" if isinstance(jobs, int) else "-",
        faults_of(figures),
        f"{extra:,}" if isinstance(extra, int) else "-",
        recovery_of(figures),
        str(figures.get("invariants", "-")),
        f"{figures['wall_seconds']:.0f} s" if figures.get("wall_seconds") else "-",
    ]


def table(paths: list[Path]) -> str:
    head = ["test", "engine", "jobs", "faults", "extra executions", "recovery p50 / p99",
            "invariants", "wall"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path in paths:
        lines.append("| " + " | ".join(row(json.loads(path.read_text()))) + " |")
    return "\n".join(lines)


def main() -> int:
    paths = sorted(RESULTS.glob("*.json"))
    if not paths:
        print(f"no figures in {RESULTS}: run `make test-faults` first", file=sys.stderr)
        return 1
    print(table(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
