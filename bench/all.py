"""Every figure of issue 7 on SQLite and PostgreSQL, medians of 3, one table: `make bench`.

    .venv/bin/python bench/all.py                 # both backends, 1,000,000-job history, ~5 min
    .venv/bin/python bench/all.py --quick         # 1 run, 100,000-job history: a smoke run
    .venv/bin/python bench/all.py --backend postgres --repeat 5 --markdown

The figures, each measured by the existing script's own functions (nothing is re-implemented):
- bench/throughput.py, `--repeat` runs: enqueue one by one, `enqueue_many`, drain with 2 worker
  processes and with 1 (steady: N / (last finished_at - first started_at), database clock),
  idle enqueue-to-start latency p50 / p99;
- bench/fanout.py: a parent with 1,000 children, the parent's created_at to finished_at;
- bench/history.py: the drain rate with 1,000,000 finished jobs in the table, against the empty
  table's rate: 2-process drains alternating between the history and an empty twin database,
  so that the machine's drift from one minute to the next falls on both alike.

One database per backend serves all three (SQLite: a file in a temporary folder; PostgreSQL:
`roadie_bench_all`, created and dropped here), plus the history's empty twin (another file;
`roadie_bench_all_empty`); no other database is touched. The jobs table is emptied before each
measurement, and the history goes in last. The table shows the medians with
issue 7's targets beside them (a blank target: the issue sets none this script knows of). Results:
bench/results/all-<timestamp>.json (every run, the medians, settings, machine, the roadie commit)
and bench/results/all-latest.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fanout  # noqa: E402
import history  # noqa: E402
import throughput  # noqa: E402
from throughput import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    console,
    cpu_probe,
    machine,
    save_document,
    source_version,
    warn_if_busy,
)

BACKENDS = {"postgres": "PostgreSQL", "sqlite": "SQLite"}

# (key, label, unit, format). Labels take the settings in braces.
FIGURES: list[tuple[str, str, str, str]] = [
    ("drain_workers", "drain no-op jobs, {workers} processes x {concurrency}, steady", "jobs/s", ",.0f"),
    ("drain_one", "drain no-op jobs, 1 process x {concurrency}, steady", "jobs/s", ",.0f"),
    ("enqueue_many", "bulk enqueue, enqueue_many of {batch}", "jobs/s", ",.0f"),
    ("enqueue_one", "single enqueue, one call per job", "jobs/s", ",.0f"),
    ("latency_p50", "idle enqueue-to-start latency p50", "ms", ",.1f"),
    ("latency_p99", "idle enqueue-to-start latency p99", "ms", ",.1f"),
    ("history_jobs_per_s", "drain with {rows:,} finished jobs in the table", "jobs/s", ",.0f"),
    ("history_ratio", "  ... vs the empty table", "%", ".0%"),
    ("fanout_seconds", "parent with {children:,} children, enqueue to parent complete", "s", ".2f"),
]  # fmt: skip

# Issue 7's targets: (comparison, value) per backend. None = no target (the table leaves the
# cell blank): the raw history rate is shown for its ratio to the empty table.
TARGETS: dict[str, dict[str, tuple[str, float] | None]] = {
    "drain_workers": {"postgres": (">=", 10_000), "sqlite": (">=", 15_000)},
    "drain_one": {"postgres": (">=", 7_000), "sqlite": (">=", 15_000)},
    "enqueue_many": {"postgres": (">=", 50_000), "sqlite": (">=", 100_000)},
    "enqueue_one": {"postgres": (">=", 2_000), "sqlite": (">=", 10_000)},
    "latency_p50": {"postgres": ("<=", 2.5), "sqlite": ("<=", 5.0)},
    "latency_p99": {"postgres": ("<=", 10.0), "sqlite": ("<=", 15.0)},
    "history_jobs_per_s": {"postgres": None, "sqlite": None},
    "history_ratio": {"postgres": (">=", 0.9), "sqlite": (">=", 0.9)},
    "fanout_seconds": {"postgres": ("<=", 1.0), "sqlite": ("<=", 1.0)},
}

FANOUT_CASE = {"children only": "fan_out"}  # the figure; fanout.py also has a callback case


def measure_backend(backend: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """All figures on one database for `backend`, created here and dropped after."""
    target, twin = history.targets(backend, args.postgres_url, args.postgres_database)
    throughput_args = throughput.parse_args(
        ["-n", str(args.n), "--repeat", str(args.repeat), "--workers", str(args.workers),
         "--concurrency", str(args.concurrency), "--batch", str(args.batch)]
    )  # fmt: skip
    history_args = history.parse_args(
        ["--rows", str(args.rows), "-n", str(args.n), "--repeat", str(args.repeat),
         "--workers", str(args.workers), "--concurrency", str(args.concurrency)]
    )  # fmt: skip
    fanout_args = argparse.Namespace(
        children=args.children, workers=2, concurrency=8, repeat=args.repeat
    )
    target.setup()
    twin.setup()  # the history's empty twin: the drains alternate between the two
    result: dict[str, Any] = {"backend": backend, "machine": machine()}
    try:
        result["database"] = None
        runs = []
        for i in range(args.repeat):
            console.print(f"[bold]{backend}[/bold] throughput run {i + 1}/{args.repeat}")
            runs.append(throughput.run_once(target, throughput_args, logs))
        result["throughput_runs"] = runs
        result["throughput_median"] = throughput.medians(runs)
        result["database"] = target.describe()

        console.print(f"[bold]{backend}[/bold] parent with {args.children:,} children ...", end=" ")
        seconds = fanout.measure_on(target, fanout_args, FANOUT_CASE)["children only"]
        result["fanout_seconds"] = seconds
        console.print(", ".join(f"{s:.2f} s" for s in seconds))

        console.print(f"[bold]{backend}[/bold] history")
        result["history"] = history.measure_backend(target, history_args, logs, twin)
    finally:
        target.teardown()
        twin.teardown()
    return result


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    """The table's medians for one backend."""
    median = result.get("throughput_median", {})
    hist = result.get("history", {})
    fan = result.get("fanout_seconds")
    return {
        "drain_workers": median.get("drain_workers"),
        "drain_one": median.get("drain_one"),
        "enqueue_many": median.get("enqueue_many"),
        "enqueue_one": median.get("enqueue_one"),
        "latency_p50": median.get("latency_p50"),
        "latency_p99": median.get("latency_p99"),
        "history_jobs_per_s": hist.get("history_jobs_per_s"),
        "history_ratio": hist.get("ratio"),
        "fanout_seconds": statistics.median(fan) if fan else None,
    }


def meets(key: str, backend: str, value: float | None) -> bool | None:
    target = TARGETS.get(key, {}).get(backend)
    if target is None or value is None:
        return None
    op, bound = target
    return value >= bound if op == ">=" else value <= bound


def rows(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[list[str]]:
    """figure, unit, then per backend: median, target, ✓/✗."""
    labels = {
        "workers": args.workers,
        "concurrency": args.concurrency,
        "batch": args.batch,
        "rows": args.rows,
        "children": args.children,
    }
    table = []
    for key, label, unit, fmt in FIGURES:
        row = [label.format(**labels), unit]
        for backend in results:
            value = results[backend]["figures"].get(key)
            target = TARGETS.get(key, {}).get(backend)
            ok = meets(key, backend, value)
            row += [
                "-" if value is None else format(value, fmt),
                "" if target is None else f"{'≥' if target[0] == '>=' else '≤'} {target[1]:{fmt}}",
                "" if ok is None else "✓" if ok else "✗",
            ]
        table.append(row)
    return table


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Print the rich table; return the same as Markdown (for bench/README.md)."""
    repeat = f"median of {args.repeat}" if args.repeat > 1 else "1 run"
    title = f"roadie, issue 7's figures, N={args.n:,} no-op jobs ({repeat})"
    table = Table(title=title)
    header = ["figure", "unit"]
    for backend in results:
        header += [BACKENDS[backend], "target", ""]
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right")
    body = rows(results, args)
    for row in body:
        table.add_row(*row)
    # Wide enough for the table in a log or a pipe (rich falls back to 80 columns there).
    Console(highlight=False, width=None if sys.stdout.isatty() else 150).print(table)
    aligns = ["---", "---"] + ["---:", "---:", ":---:"] * len(results)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of every figure; median (3; --quick: 1)"
    )
    parser.add_argument("-n", type=int, default=10_000, help="jobs per measurement (10000)")
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="finished jobs for the history (1000000; --quick: 100000)",
    )
    parser.add_argument("--children", type=int, default=1000, help="the parent's children (1000)")
    parser.add_argument("-w", "--workers", type=int, default=2, help="drain processes (2)")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="per process (4)")
    parser.add_argument("--batch", type=int, default=1000, help="enqueue_many batch (1000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 run and a 100,000-job history (unless --repeat/--rows say otherwise)",
    )
    parser.add_argument(
        "--prefetch", type=int, default=None, help="each drain worker's --prefetch (default: none)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server to create the bench database on (or ROADIE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--postgres-database", default="roadie_bench_all", help="created and dropped here"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.rows is None:
        args.rows = 100_000 if args.quick else 1_000_000
    if min(args.repeat, args.n, args.rows, args.children, args.workers, args.concurrency) < 1:
        parser.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    throughput.PREFETCH = args.prefetch
    backends = ["postgres", "sqlite"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = {
        key: getattr(args, key)
        for key in (
            "repeat",
            "n",
            "rows",
            "children",
            "workers",
            "concurrency",
            "batch",
            "prefetch",
        )
    }
    settings |= {"latency_samples": 200, "latency_gap_ms": 20, "fanout_workers": "2 x 8"}
    warn_if_busy()
    load_before = os.getloadavg()
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="roadie-bench-logs-") as logs_dir:
        for backend in backends:
            probe_before = cpu_probe()
            console.print(f"[bold]{backend}[/bold] cpu probe {probe_before:.1f} ms")
            try:
                results[backend] = measure_backend(backend, args, Path(logs_dir))
            except Exception as exc:  # one broken backend must not lose the other's figures
                console.print(f"[red]{backend} failed: {exc!r}[/red]")
                results[backend] = {"backend": backend, "failed": repr(exc)}
                failed = True
            results[backend]["figures"] = figures(results[backend])
            results[backend]["cpu_probe_ms"] = [probe_before, cpu_probe()]
    markdown = print_table(results, args)
    elapsed = time.monotonic() - started
    probes = ", ".join(
        f"{backend} {' -> '.join(f'{ms:.1f}' for ms in result.get('cpu_probe_ms', []))} ms"
        for backend, result in results.items()
    )
    console.print(
        f"took {elapsed:.0f} s; load average before {load_before[0]:.2f}; cpu probe {probes}"
        " (a fixed Python loop, best of 5: lower is a faster machine)"
    )
    if args.markdown:
        print(markdown)
    if not args.no_save:
        document = {
            "timestamp": stamp,
            "settings": settings,
            "seconds": elapsed,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "source": source_version(),
            "targets": TARGETS,
            "table_markdown": markdown,
            "results": results,
        }
        path, latest = save_document("all", stamp, document)
        console.print(
            f"wrote {path.relative_to(HERE.parent)} and {latest.relative_to(HERE.parent)}"
        )
    bad = any(
        run.get(step, {}).get("complete") not in (None, args.n)
        for result in results.values()
        for run in result.get("throughput_runs", [])
        for step in ("drain_workers", "drain_one")
    )
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
