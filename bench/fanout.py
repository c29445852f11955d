"""Parent with 1,000 children: time from enqueueing the parent until it is complete.

    .venv/bin/python bench/fanout.py [--backend sqlite|postgres|both] [--children 1000]
                                     [--workers 2] [--concurrency 8] [--repeat 3]

An idle `roadie worker --processes W` serves the queue; the bench enqueues one parent whose
handler spawns N no-op children, and waits until the parent is complete. The time is the
parent's finished_at - created_at, both from the database's clock. Two cases: children only
(the parent completes when the last child ends), and an on_child_complete callback per child
(N more jobs, each its own transaction, before the parent can complete).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fanout_tasks  # noqa: E402
from throughput import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    RESULTS,
    PostgresTarget,
    SQLiteTarget,
    Target,
    roadie_command,
)

from roadie import App  # noqa: E402

console = Console(highlight=False)
CASES = {"children only": "fan_out", "callback per child": "fan_out_heard"}


def start_workers(target: Target, workers: int, concurrency: int) -> subprocess.Popen[bytes]:
    command = [
        *roadie_command(), "worker", "--app", "fanout_tasks:app", "--database-url", target.url,
        "--queues", fanout_tasks.QUEUE, "--processes", str(workers),
        "--concurrency", str(concurrency), "--log-level", "WARNING",
    ]  # fmt: skip
    # Keep the caller's PYTHONPATH after this folder, so a snapshot clone put first on it
    # (README: measuring a commit) is what the workers import too.
    paths = [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("ROADIE_DATABASE_URL", None)
    return subprocess.Popen(command, cwd=HERE, env=env)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def one_run(app: App, task_name: str, children: int) -> float:
    parent = app.enqueue(task_name, {"children": children})
    wait_for(
        lambda: app.backend.job_get(parent.id).state in ("complete", "failed"), 120, "the parent"
    )
    done = app.backend.job_get(parent.id)
    if done.state != "complete":
        raise SystemExit(f"parent {done.id} ended {done.state}: {done.error}")
    return (done.finished_at - done.created_at).total_seconds()


def measure(target: Target, args: argparse.Namespace) -> dict[str, list[float]]:
    """Both cases on a fresh database for `target` (created here, dropped after)."""
    target.setup()
    try:
        return measure_on(target, args, CASES)
    finally:
        target.teardown()


def measure_on(
    target: Target, args: argparse.Namespace, cases: dict[str, str]
) -> dict[str, list[float]]:
    """`args.repeat` runs of each case on `target`'s existing database (bench/all.py shares one
    database per backend between its figures); the jobs table is emptied before each run."""
    app = App(target.url)
    app.migrate()
    app.tasks.update(fanout_tasks.app.tasks)
    target.reset()
    workers = start_workers(target, args.workers, args.concurrency)
    try:
        wait_for(lambda: len(app.admin.workers()) >= args.workers, 30, "the workers")
        one_run(app, "fan_out", 10)  # warm-up
        results: dict[str, list[float]] = {case: [] for case in cases}
        for _ in range(args.repeat):
            for case, task_name in cases.items():
                target.reset()
                results[case].append(one_run(app, task_name, args.children))
        return results
    finally:
        workers.terminate()
        workers.wait(30)
        app.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("-w", "--workers", type=int, default=2)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--postgres-database", default="roadie_bench_fanout")
    args = parser.parse_args()
    targets: list[Target] = []
    if args.backend in ("sqlite", "both"):
        targets.append(SQLiteTarget())
    if args.backend in ("postgres", "both"):
        targets.append(PostgresTarget(args.postgres_url, args.postgres_database))
    table = Table(
        "case",
        *(t.name for t in targets),
        title=f"parent with {args.children:,} children: enqueue to complete, median of {args.repeat} (s)",
    )
    measured = {target.name: measure(target, args) for target in targets}
    for case in CASES:
        table.add_row(case, *(f"{statistics.median(measured[t.name][case]):.2f}" for t in targets))
    console.print(table)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"fanout-{stamp}.json").write_text(
        json.dumps({"timestamp": stamp, "settings": vars(args), "seconds": measured}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
