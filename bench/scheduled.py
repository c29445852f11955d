"""The drain rate behind a backlog of jobs scheduled for later, vs without one.

    .venv/bin/python bench/scheduled.py [--backend sqlite|postgres|both] [--scheduled 100000]
                                        [-n 10000] [--repeat 3]

Jobs scheduled for later (a delay, a `run_at`, a retry waiting out its backoff) are pending but not
due. Before migration 0008 every claim read past those of its queue that sat ahead of the due
jobs: behind 100,000 of them a drain ran at a quarter of its speed. Per backend, on a fresh
database: drain N due no-op jobs with one `roadie worker --burst` process (bench/throughput.py's
drain, steady jobs/s), --repeat times; then insert --scheduled jobs due in a day (untimed) and
drain N due jobs again, --repeat times. Reported: both medians and their ratio. The result goes to
bench/results/scheduled-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402
import psycopg  # noqa: E402
from throughput import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    PostgresTarget,
    SQLiteTarget,
    Target,
    console,
    measure_drain,
    save_document,
    source_version,
)


def drains(target: Target, args: argparse.Namespace, logs: Path) -> list[float]:
    rates = []
    for _ in range(args.repeat):
        result = measure_drain(target, args.n, 1000, 1, args.concurrency, logs)
        rates.append(result["jobs_per_s"] or 0.0)
        console.print(f"  {target.name}: drain ... {rates[-1]:,.0f} jobs/s")
        delete_all_but_scheduled(target)
    return rates


def measure(target: Target, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    target.setup()
    app = bench_tasks.app
    try:
        app.use_database(target.url)
        app.migrate()
        without = drains(target, args, logs)
        later = bench_tasks.noop.options(delay="1d")
        for start in range(0, args.scheduled, 1000):
            later.enqueue_many([{}] * min(1000, args.scheduled - start))
        console.print(f"  {target.name}: {args.scheduled:,} jobs scheduled for later")
        behind = drains(target, args, logs)
    finally:
        app.close()
        target.teardown()
    return {
        "without_runs": without,
        "behind_runs": behind,
        "without": statistics.median(without),
        "behind": statistics.median(behind),
        "ratio": statistics.median(behind) / statistics.median(without),
    }


KEEP_SCHEDULED = "DELETE FROM roadie_jobs WHERE NOT (state = 'pending' AND run_at > {now})"


def delete_all_but_scheduled(target: Target) -> None:
    """Between drains: the drained jobs go, the scheduled backlog stays."""
    if isinstance(target, SQLiteTarget):
        with target._conn() as conn:
            conn.execute(KEEP_SCHEDULED.format(now="(julianday('now') - 2440587.5) * 86400.0"))
    else:
        with psycopg.connect(target.url, autocommit=True) as conn:
            conn.execute(KEEP_SCHEDULED.format(now="now()"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--scheduled", type=int, default=100_000, help="jobs due later (100000)")
    parser.add_argument("-n", type=int, default=10_000, help="due jobs per drain (10000)")
    parser.add_argument("-c", "--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    args = parser.parse_args()
    targets: list[Target] = []
    if args.backend in ("sqlite", "both"):
        targets.append(SQLiteTarget())
    if args.backend in ("postgres", "both"):
        targets.append(PostgresTarget(args.postgres_url, "roadie_bench_scheduled"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="roadie-bench-logs-") as logs:
        for target in targets:
            console.print(f"[bold]{target.name}[/bold]")
            results[target.name] = measure(target, args, Path(logs))
    for name, result in results.items():
        console.print(
            f"{name}: {result['without']:,.0f} jobs/s without, {result['behind']:,.0f} behind "
            f"{args.scheduled:,} scheduled jobs ({result['ratio']:.0%})"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {"timestamp": stamp, "settings": vars(args), "source": source_version()}
    path, _ = save_document("scheduled", stamp, {**document, "results": results})
    console.print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
