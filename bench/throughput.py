"""roadie throughput and pick-up latency, on SQLite and PostgreSQL.

    .venv/bin/python bench/throughput.py [--backend sqlite|postgres|both] [-n 10000]
                                         [--workers 2] [--concurrency 4] [--repeat 1]

Per backend, each measurement on an emptied jobs table:
1. enqueue N no-op jobs one by one (`task.enqueue()`), in this process;
2. enqueue N jobs with `task.enqueue_many` in batches;
3. drain N no-op jobs with real `roadie worker --burst --processes W` and then with one process;
   "steady" throughput is N / (last finished_at - first started_at), from the database's clock,
   so process start-up is left out (the wall time including it is reported too);
4. idle pick-up latency: one idle `roadie worker` (not burst), jobs enqueued one at a time with a
   pause between them; latency = started_at - created_at, both stamped by the database.

SQLite runs on a file in a temporary folder; PostgreSQL in a database this script creates and
drops (`roadie_bench` by default). Results go to bench/results/<backend>-<timestamp>.json and
bench/results/latest.json. With --repeat R every measurement runs R times and the table shows
the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from rich.console import Console
from rich.table import Table

import roadie

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402  (the task module the workers load too)

RESULTS = HERE / "results"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TASK_APP = "bench_tasks:app"
console = Console(highlight=False)


# -- the two databases ---------------------------------------------------------------------------


JobRow = tuple[str, int, float, float | None, float | None, str | None]


class Target:
    """One backend under test: its URL for roadie, and direct SQL for setup and measurement."""

    name: str
    url: str

    def setup(self) -> None: ...
    def teardown(self) -> None: ...
    def reset(self) -> None: ...
    def job_times(self) -> list[JobRow]:
        """(state, attempt, created_at, started_at, finished_at, last worker) of every job;
        times in epoch seconds from the database."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError


class SQLiteTarget(Target):
    name = "sqlite"

    def setup(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="roadie-bench-")
        self.path = Path(self._dir.name) / "bench.db"
        self.url = f"sqlite:///{self.path}"  # absolute path: sqlite:////tmp/...

    def teardown(self) -> None:
        self._dir.cleanup()

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            yield conn
        finally:
            conn.close()

    def reset(self) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM roadie_jobs")
            conn.execute("DELETE FROM roadie_workers")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def job_times(self) -> list[JobRow]:
        with self._conn() as conn:
            return conn.execute(
                "SELECT state, attempt, created_at, started_at, finished_at,"
                " json_extract(attempts, '$[#-1].worker') FROM roadie_jobs ORDER BY id"
            ).fetchall()

    def describe(self) -> dict[str, Any]:
        return {
            "sqlite_version": sqlite3.sqlite_version,
            "settings": "journal_mode=WAL, synchronous=FULL (set by roadie on every connection)",
            "database": "a file in a temporary folder on the local disk",
        }


class PostgresTarget(Target):
    name = "postgres"

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin_url = admin_url
        self.database = database
        parts = urlsplit(admin_url)
        self.url = urlunsplit(parts._replace(path=f"/{database}"))

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_url, autocommit=True)

    def setup(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def teardown(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def reset(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("TRUNCATE roadie_jobs, roadie_workers")
            conn.execute("VACUUM ANALYZE roadie_jobs")

    def job_times(self) -> list[JobRow]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT state, attempt, extract(epoch FROM created_at)::float8,"
                " extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8,"
                " attempts -> -1 ->> 'worker' FROM roadie_jobs ORDER BY id"
            ).fetchall()

    def describe(self) -> dict[str, Any]:
        with psycopg.connect(self.url) as conn:
            show = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]
                for name in (
                    "server_version",
                    "fsync",
                    "synchronous_commit",
                    "wal_sync_method",
                    "full_page_writes",
                    "shared_buffers",
                )
            }
        return {"postgres": show, "database": self.database}


# -- measurements --------------------------------------------------------------------------------


def roadie_command() -> list[str]:
    script = Path(sys.executable).with_name("roadie")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from roadie.cli import main; sys.exit(main())"]


PREFETCH: int | None = None  # --prefetch, passed to the workers when given


def worker_command(target: Target, processes: int, concurrency: int, burst: bool) -> list[str]:
    command = [
        *roadie_command(),
        "worker",
        "--app",
        TASK_APP,
        "--database-url",
        target.url,
        "--queues",
        bench_tasks.QUEUE,
        "--concurrency",
        str(concurrency),
        "--processes",
        str(processes),
        "--log-level",
        "INFO",
        *(["--prefetch", str(PREFETCH)] if PREFETCH is not None else []),
    ]
    return [*command, "--burst"] if burst else command


def start_worker(
    target: Target, processes: int, concurrency: int, burst: bool, log: Path
) -> subprocess.Popen[bytes]:
    paths = [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("ROADIE_DATABASE_URL", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            worker_command(target, processes, concurrency, burst),
            cwd=HERE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def problems_in(log: Path) -> list[str]:
    """Warning and error lines of a worker's log (there should be none)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [
        line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line
    ]


def measure_enqueue_one(app: Any, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    for _ in range(n):
        bench_tasks.noop.enqueue()
    elapsed = time.perf_counter() - started
    return {"jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed}


def measure_enqueue_many(app: Any, n: int, batch: int) -> dict[str, Any]:
    started = time.perf_counter()
    done = 0
    while done < n:
        size = min(batch, n - done)
        bench_tasks.noop.enqueue_many([{}] * size)
        done += size
    elapsed = time.perf_counter() - started
    return {"jobs": n, "batch": batch, "seconds": elapsed, "jobs_per_s": n / elapsed}


def fill(n: int, batch: int) -> None:
    for start in range(0, n, batch):
        bench_tasks.noop.enqueue_many([{}] * min(batch, n - start))


def measure_drain(
    target: Target, n: int, batch: int, processes: int, concurrency: int, logs: Path
) -> dict[str, Any]:
    fill(n, batch)
    log = logs / f"{target.name}-drain-{processes}p-{time.time_ns()}.log"
    started = time.perf_counter()
    worker = start_worker(target, processes, concurrency, burst=True, log=log)
    try:
        code = worker.wait(timeout=600)
    finally:
        if worker.poll() is None:
            worker.kill()
    wall = time.perf_counter() - started
    figures = drain_figures(target.job_times())
    problems = problems_in(log)
    if code != 0 or figures["complete"] != n:
        console.print(
            f"[red]{target.name}: drain with {processes} process(es) exited {code}, "
            f"{figures['complete']}/{n} jobs complete; see {log}[/red]"
        )
    return {
        "jobs": n,
        "processes": processes,
        "concurrency": concurrency,
        "exit_code": code,
        **figures,
        "wall_seconds": wall,
        "wall_jobs_per_s": figures["complete"] / wall,
        "worker_log_problems": problems[:20],
    }


def drain_figures(rows: list[JobRow]) -> dict[str, Any]:
    """What a drain did, from its jobs' rows: jobs complete, attempts beyond one each, jobs per
    worker, and the steady rate from the first start to the last finish (database clock)."""
    complete = [r for r in rows if r[0] == "complete"]
    steady = max(r[4] for r in complete) - min(r[3] for r in complete) if complete else None
    return {
        "complete": len(complete),
        "extra_attempts": sum(r[1] for r in rows) - len(rows),
        "jobs_per_worker": sorted(Counter(r[5] for r in complete).values(), reverse=True),
        "steady_seconds": steady,
        "jobs_per_s": len(complete) / steady if steady else None,
    }


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def measure_latency(
    app: Any, target: Target, samples: int, gap: float, concurrency: int, logs: Path
) -> dict[str, Any]:
    log = logs / f"{target.name}-latency-{time.time_ns()}.log"
    worker = start_worker(target, 1, concurrency, burst=False, log=log)
    try:
        warmup = bench_tasks.noop.enqueue()  # the worker is up once it ran this job
        wait_until(lambda: app.get_job(warmup.id).state == "complete", 30, "the worker to start")
        time.sleep(0.5)
        ids = []
        for _ in range(samples):
            ids.append(bench_tasks.noop.enqueue().id)
            time.sleep(gap)
        wait_until(
            lambda: all(app.get_job(i).state == "complete" for i in ids[-5:]),
            30,
            "the last jobs to finish",
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    rows = target.job_times()[1:]  # the warm-up job first
    pickup = sorted((r[3] - r[2]) * 1000 for r in rows if r[3] is not None)
    total = sorted((r[4] - r[2]) * 1000 for r in rows if r[4] is not None)
    return {
        "samples": len(pickup),
        "gap_ms": gap * 1000,
        "p50_ms": percentile(pickup, 50),
        "p99_ms": percentile(pickup, 99),
        "max_ms": pickup[-1] if pickup else None,
        "mean_ms": statistics.fmean(pickup) if pickup else None,
        "finish_p50_ms": percentile(total, 50),
        "finish_p99_ms": percentile(total, 99),
        "worker_log_problems": problems_in(log)[:20],
    }


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks, on sorted values."""
    if not values:
        return None
    rank = (len(values) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def run_once(target: Target, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    app = bench_tasks.app
    app.use_database(target.url)
    try:
        app.migrate()
        result: dict[str, Any] = {}
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("enqueue_one", lambda: measure_enqueue_one(app, args.n)),
            ("enqueue_many", lambda: measure_enqueue_many(app, args.n, args.batch)),
            (
                "drain_workers",
                lambda: measure_drain(
                    target, args.n, args.batch, args.workers, args.concurrency, logs
                ),
            ),
            (
                "drain_one",
                lambda: measure_drain(target, args.n, args.batch, 1, args.concurrency, logs),
            ),
            (
                "latency",
                lambda: measure_latency(
                    app, target, args.samples, args.gap_ms / 1000, args.concurrency, logs
                ),
            ),
        ]
        if args.workers == 1:
            steps = [step for step in steps if step[0] != "drain_one"]
        if args.drains_only:
            steps = [step for step in steps if step[0].startswith("drain")]
        for name, step in steps:
            target.reset()
            console.print(f"  {target.name}: {name} ...", end=" ")
            result[name] = step()
            console.print(summary(name, result[name]))
        return result
    finally:
        app.close()


def summary(name: str, result: dict[str, Any]) -> str:
    if name == "latency":
        return f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms"
    rate = result["jobs_per_s"]
    return f"{rate:,.0f} jobs/s" if rate else "failed"


# -- medians, table, files -----------------------------------------------------------------------

METRICS = [
    # (key in the median dict, label, unit, (step, field))
    ("enqueue_one", "enqueue one by one (task.enqueue)", "jobs/s", ("enqueue_one", "jobs_per_s")),
    ("enqueue_many", "enqueue_many, batches of {batch}", "jobs/s", ("enqueue_many", "jobs_per_s")),
    (
        "drain_workers",
        "drain, {workers} processes x {concurrency} (steady)",
        "jobs/s",
        ("drain_workers", "jobs_per_s"),
    ),
    (
        "drain_workers_wall",
        "drain, {workers} processes, incl. start-up",
        "jobs/s",
        ("drain_workers", "wall_jobs_per_s"),
    ),
    (
        "drain_one",
        "drain, 1 process x {concurrency} (steady)",
        "jobs/s",
        ("drain_one", "jobs_per_s"),
    ),
    ("latency_p50", "idle pick-up latency p50", "ms", ("latency", "p50_ms")),
    ("latency_p99", "idle pick-up latency p99", "ms", ("latency", "p99_ms")),
]


def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, _, _, (step, field) in METRICS:
        values = [run[step][field] for run in runs if step in run and run[step][field] is not None]
        out[key] = statistics.median(values) if values else None
    return out


def cpu_probe(repeat: int = 5) -> float:
    """Milliseconds a fixed loop of pure Python takes now (the best of `repeat`). This machine's
    speed drifts by a third from one minute to the next: a run's figures are read against it."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i
        best = min(best, time.perf_counter() - began)
    return best * 1000


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo")
    memory = None
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def source_version() -> dict[str, Any]:
    """Which roadie was measured: where it was imported from, its commit, uncommitted changes."""
    package = Path(roadie.__file__).resolve().parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=package.parent, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "roadie": str(package),
        "commit": git("rev-parse", "HEAD"),
        "roadie_dirty": bool(git("status", "--porcelain", "roadie")),
    }


def warn_if_busy() -> None:
    """A benchmark on a busy machine measures the other load too: say so."""
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        console.print(
            f"[yellow]warning: load average {load:.2f} before the run: "
            "other processes may skew the numbers[/yellow]"
        )


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    repeat = f"median of {args.repeat} runs" if args.repeat > 1 else "1 run"
    table = Table(title=f"roadie throughput, N={args.n:,} no-op jobs ({repeat})")
    table.add_column("measurement")
    table.add_column("unit")
    for backend in results:
        table.add_column(backend, justify="right")
    labels = {"batch": args.batch, "workers": args.workers, "concurrency": args.concurrency}
    for key, label, unit, _ in METRICS:
        if key == "drain_one" and args.workers == 1:
            continue
        cells = []
        for result in results.values():
            value = result["median"].get(key)
            cells.append(
                "-" if value is None else f"{value:,.1f}" if unit == "ms" else f"{value:,.0f}"
            )
        table.add_row(label.format(**labels), unit, *cells)
    console.print(table)


def save_document(name: str, stamp: str, document: dict[str, Any]) -> tuple[Path, Path]:
    """Write `bench/results/<name>-<stamp>.json` and replace `<name>-latest.json` with a copy
    (through a temporary file, so a reader never sees half of it); returns both paths."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    latest = RESULTS / f"{name}-latest.json"
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(path.read_text())
    tmp.replace(latest)
    return path, latest


def save(results: dict[str, dict[str, Any]], stamp: str) -> list[Path]:
    RESULTS.mkdir(exist_ok=True)
    written = []
    for backend, result in results.items():
        path = RESULTS / f"{backend}-{stamp}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        written.append(path)
    latest = RESULTS / "latest.json"
    tmp = latest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"timestamp": stamp, "results": results}, indent=2) + "\n")
    tmp.replace(latest)
    written.append(latest)
    return written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="jobs per measurement (10000)")
    parser.add_argument(
        "-w", "--workers", type=int, default=2, help="worker processes for the drain (2)"
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=4,
        help="each worker process's --concurrency (4, roadie's default)",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--batch", type=int, default=1000, help="enqueue_many batch size (1000)")
    parser.add_argument("--samples", type=int, default=200, help="latency samples (200)")
    parser.add_argument("--gap-ms", type=float, default=20, help="pause between samples (20)")
    parser.add_argument(
        "--prefetch", type=int, default=None, help="each worker's --prefetch (roadie's default)"
    )
    parser.add_argument(
        "--drains-only", action="store_true", help="measure the drains only (no enqueue, latency)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per backend; median shown")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server to create the bench database on (or ROADIE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--postgres-database", default="roadie_bench")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.n < 1 or args.workers < 1 or args.concurrency < 1 or args.batch < 1:
        parser.error("-n, --workers, --concurrency and --batch must be at least 1")
    if args.repeat < 1 or args.samples < 1:
        parser.error("--repeat and --samples must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    global PREFETCH
    args = parse_args(argv)
    PREFETCH = args.prefetch
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = {
        key: getattr(args, key)
        for key in (
            "n",
            "workers",
            "concurrency",
            "prefetch",
            "batch",
            "samples",
            "gap_ms",
            "repeat",
        )
    }
    results: dict[str, dict[str, Any]] = {}
    warn_if_busy()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="roadie-bench-logs-") as logs_dir:
        logs = Path(logs_dir)
        for backend in backends:
            target: Target = (
                SQLiteTarget()
                if backend == "sqlite"
                else PostgresTarget(args.postgres_url, args.postgres_database)
            )
            target.setup()
            host = machine()  # before the runs: its load average is the other processes'
            try:
                runs = []
                failed = []
                for i in range(args.repeat):
                    console.print(f"[bold]{backend}[/bold] run {i + 1}/{args.repeat}")
                    try:
                        runs.append(run_once(target, args, logs))
                    except Exception as exc:  # one broken run must not lose the others
                        console.print(f"[red]{backend} run {i + 1} failed: {exc!r}[/red]")
                        failed.append(repr(exc))
                results[backend] = {
                    "backend": backend,
                    "timestamp": stamp,
                    "settings": settings,
                    "machine": host,
                    "source": source_version(),
                    "database": target.describe(),
                    "median": medians(runs),
                    "runs": runs,
                    "failed_runs": failed,
                }
            finally:
                target.teardown()
    print_table(results, args)
    console.print(f"took {time.monotonic() - started:.0f} s")
    if not args.no_save:
        for path in save(results, stamp):
            console.print(f"wrote {path.relative_to(HERE.parent)}")
    return 1 if any(result["failed_runs"] for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
