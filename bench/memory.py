"""A worker's resident memory over a long run (issue 7: "stays flat over a 100,000-job run").

    .venv/bin/python bench/memory.py [--backend sqlite|postgres|both] [-n 100000]
                                     [--concurrency 4] [--interval 0.5]

Per backend: N no-op jobs are inserted with `enqueue_many` (untimed), then one real
`roadie worker --burst --processes 1 --concurrency 4` (the same command bench/throughput.py runs)
drains them. While it runs, this script reads the worker's VmRSS from /proc/<pid>/status every
0.5 s, and with each sample the number of finished jobs from the database. Reported: RSS after
the first 1,000 jobs (the start: imports, connections and first-job caches are in by then), at
25/50/75/100 % of the jobs done, the peak, and the growth from start to end in MB and %.

SQLite runs on a file in a temporary folder; PostgreSQL in a database this script creates and
drops (`roadie_bench_memory` by default; no other database is touched). Results go to
bench/results/memory-<timestamp>.json. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402  (the task module the workers load too)
import throughput  # noqa: E402  (targets, worker command, machine description)
from throughput import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    RESULTS,
    PostgresTarget,
    SQLiteTarget,
    Target,
    console,
)

WARM_UP_JOBS = 1_000
MILESTONES = (25, 50, 75, 100)
MB = 1024 * 1024


# -- sampling ------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int] | None:
    """VmRSS, VmHWM (in bytes) and Threads of a live process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024  # "12345 kB"
        elif key == "Threads":
            fields[key] = int(value)
        elif key == "State" and value.split()[0] == "Z":
            return None  # exited, not yet reaped: its memory is gone
    return fields if "VmRSS" in fields else None


def finished_counter(target: Target) -> tuple[Callable[[], int], Callable[[], None]]:
    """A cheap count of finished jobs (the finished_at index), on one connection kept open."""
    query = "SELECT count(*) FROM roadie_jobs WHERE finished_at IS NOT NULL"
    if isinstance(target, SQLiteTarget):
        lite = sqlite3.connect(target.path, isolation_level=None, timeout=30)
        return (lambda: lite.execute(query).fetchone()[0]), lite.close
    pg = psycopg.connect(target.url, autocommit=True)
    return (lambda: pg.execute(query).fetchone()[0]), pg.close


def job_states(target: Target) -> dict[str, int]:
    rows = target.job_times()
    states: dict[str, int] = {}
    for row in rows:
        states[row[0]] = states.get(row[0], 0) + 1
    states["extra_attempts"] = sum(row[1] for row in rows) - len(rows)
    return states


def measure(target: Target, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    app = bench_tasks.app
    app.use_database(target.url)
    try:
        app.migrate()
        began = time.perf_counter()
        throughput.fill(args.n, args.batch)
        enqueue_seconds = time.perf_counter() - began
    finally:
        app.close()
    console.print(f"  {target.name}: {args.n:,} jobs enqueued in {enqueue_seconds:.1f} s")

    count, close = finished_counter(target)
    log = logs / f"{target.name}-memory-{time.time_ns()}.log"
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    worker = throughput.start_worker(target, 1, args.concurrency, burst=True, log=log)
    next_report = 0.0
    try:
        while True:
            done = count()  # first the count, then the RSS: at least `done` jobs were run by then
            status = proc_status(worker.pid)
            elapsed = time.perf_counter() - started
            if status is None or worker.poll() is not None:
                break
            samples.append(
                {
                    "t": round(elapsed, 3),
                    "done": done,
                    "rss": status["VmRSS"],
                    "hwm": status.get("VmHWM"),
                    "threads": status.get("Threads"),
                }
            )
            if elapsed >= next_report:
                console.print(
                    f"    {elapsed:6.1f} s  {done:>8,} done  RSS {status['VmRSS'] / MB:6.1f} MB"
                )
                next_report = elapsed + 10
            if elapsed > args.timeout:
                console.print(
                    f"[red]{target.name}: worker still running after {args.timeout} s[/red]"
                )
                break
            time.sleep(args.interval)
        code = worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        close()
    wall = time.perf_counter() - started
    states = job_states(target)
    problems = throughput.problems_in(log)
    if code != 0 or states.get("complete") != args.n:
        console.print(
            f"[red]{target.name}: worker exited {code}, {states} of {args.n}; see {log}[/red]"
        )
    return {
        "jobs": args.n,
        "concurrency": args.concurrency,
        "enqueue_seconds": enqueue_seconds,
        "exit_code": code,
        "states": states,
        "wall_seconds": wall,
        "worker_log_problems": problems[:20],
        **summarize(samples, args.n),
        "samples": samples,
    }


def first_at(samples: list[dict[str, Any]], done: int) -> dict[str, Any] | None:
    return next((s for s in samples if s["done"] >= done), None)


def point(sample: dict[str, Any] | None) -> dict[str, Any] | None:
    if sample is None:
        return None
    return {"t": sample["t"], "done": sample["done"], "rss_mb": sample["rss"] / MB}


def summarize(samples: list[dict[str, Any]], n: int) -> dict[str, Any]:
    if not samples:
        return {"start": None, "milestones": {}, "peak_mb": None, "growth_mb": None}
    start = first_at(samples, min(WARM_UP_JOBS, n)) or samples[-1]
    milestones = {f"{p}%": point(first_at(samples, -(-n * p // 100))) for p in MILESTONES}
    # A burst worker exits soon after its last job: the last sample alive stands in for 100 %
    # when no sample saw every job done (its "done" says how close it was).
    end = first_at(samples, n) or samples[-1]
    milestones["100%"] = point(end)
    peak = max(samples, key=lambda s: s["rss"])
    growth = (end["rss"] - start["rss"]) / MB
    after = [s["rss"] for s in samples if s["t"] >= start["t"]]
    return {
        "first_sample": point(samples[0]),
        "start": point(start),
        "milestones": milestones,
        "end": point(end),
        "peak_mb": peak["rss"] / MB,
        "peak_at": point(peak),
        "vm_hwm_mb": (samples[-1]["hwm"] or 0) / MB,
        "min_after_start_mb": min(after) / MB,
        "growth_mb": growth,
        "growth_pct": 100 * growth / (start["rss"] / MB),
        "threads": sorted({s["threads"] for s in samples}),
        "sample_count": len(samples),
    }


# -- table, files --------------------------------------------------------------------------------


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def print_table(results: dict[str, dict[str, Any]], n: int) -> None:
    table = Table(title=f"roadie worker RSS (MB) over {n:,} no-op jobs, 1 process x 4")
    table.add_column("point")
    for backend in results:
        table.add_column(backend, justify="right")
    runs = [result["run"] for result in results.values()]

    def cell(p: dict[str, Any] | None) -> str:
        return "-" if p is None else f"{p['rss_mb']:,.1f}  ({p['done']:,} done)"

    table.add_row("first sample", *(cell(run.get("first_sample")) for run in runs))
    table.add_row(f"after {WARM_UP_JOBS:,} jobs (start)", *(cell(run["start"]) for run in runs))
    for p in MILESTONES:
        table.add_row(f"{p} % done", *(cell(run["milestones"].get(f"{p}%")) for run in runs))
    table.add_row("peak", *(mb(run["peak_mb"]) for run in runs))
    table.add_row(
        "growth end vs start",
        *(
            "-"
            if run["growth_mb"] is None
            else f"{run['growth_mb']:+,.1f} MB ({run['growth_pct']:+.1f} %)"
            for run in runs
        ),
    )
    table.add_row("worker wall time", *(f"{run['wall_seconds']:,.0f} s" for run in runs))
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="jobs in the run (100000)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=4, help="the worker's --concurrency (4)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="enqueue_many batch size (1000)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--timeout", type=float, default=1800, help="give up on the worker after")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server to create the bench database on (or ROADIE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--postgres-database", default="roadie_bench_memory")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.n < 1 or args.concurrency < 1 or args.batch < 1 or args.interval <= 0:
        parser.error("-n, --concurrency, --batch and --interval must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path("/proc/self/status").exists():
        sys.exit("memory.py reads /proc/<pid>/status: Linux only")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = {
        key: getattr(args, key) for key in ("n", "concurrency", "batch", "interval", "timeout")
    }
    results: dict[str, dict[str, Any]] = {}
    failed = False
    throughput.warn_if_busy()
    with tempfile.TemporaryDirectory(prefix="roadie-bench-logs-") as logs_dir:
        for backend in backends:
            target: Target = (
                SQLiteTarget()
                if backend == "sqlite"
                else PostgresTarget(args.postgres_url, args.postgres_database)
            )
            target.setup()
            host = throughput.machine()
            try:
                console.print(f"[bold]{backend}[/bold]")
                run = measure(target, args, Path(logs_dir))
                failed |= run["exit_code"] != 0 or run["states"].get("complete") != args.n
                results[backend] = {
                    "backend": backend,
                    "timestamp": stamp,
                    "settings": settings,
                    "machine": host,
                    "source": throughput.source_version(),
                    "database": target.describe(),
                    "run": run,
                }
            finally:
                target.teardown()
    print_table(results, args.n)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"memory-{stamp}.json"
        path.write_text(json.dumps({"timestamp": stamp, "results": results}, indent=2) + "\n")
        console.print(f"wrote {path.relative_to(HERE.parent)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
