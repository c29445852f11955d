"""roadie under load, FAULTS.md's L1, L2 and L4, on PostgreSQL and SQLite: `make bench-load`.

    .venv/bin/python bench/load.py                   # all three parts, both backends (~3-4 min)
    .venv/bin/python bench/load.py --quick           # a smoke run of small sizes (~30 s)
    .venv/bin/python bench/load.py --only l1 --backend sqlite --processes 1,2,4

- L1 throughput scaling: N no-op jobs drained by 1, 2, 4, 8 and 16 worker processes (concurrency
  4 each); steady jobs/s = N / (last finished_at - first started_at), database clock. The drain
  is gated: the jobs wait in a paused queue until every process has registered, then the queue
  is resumed, so all processes start on the same backlog (a `--burst` drain lasts about a
  second here, and would count 16 processes forking, connecting and registering as drain). On
  PostgreSQL the largest count is bounded by the free connections (`max_connections` less the
  reserved and the ones in use) over a process's worst case (its pool, `max(pool_size,
  concurrency + WORKER_CONNECTIONS)`, plus its LISTEN connection); the run stops there and says so.
- L2 latency under load: 2 worker processes while this process enqueues no-op jobs at
  --fraction (50 %) of the 2-process drain rate (L1's figure of the same run, or a drain measured
  first), in `enqueue_many` batches every 10 ms; probe jobs are enqueued one at a time at random
  (exponential) gaps among the load. Latency = started_at - created_at, both stamped by the
  database (as bench/throughput.py's idle latency), p50 / p99 of the probes and of all jobs.
- L4 backlog drain: --rows (1,000,000) pending no-op jobs inserted by SQL in statements of 50,000
  rows (as bench/history.py inserts its history), then drained by `roadie worker --burst
  --processes 2`: the insert time, the steady jobs/s and the time to empty (launch of the
  workers to the last finished_at, database clock).

Each backend gets a fresh database: SQLite a file in a temporary folder, PostgreSQL
`roadie_bench_load` (created and dropped here; no other database is touched). Results:
bench/results/load-<timestamp>.json (every measurement, settings, machine, load average, the
roadie commit) and load-latest.json.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_tasks  # noqa: E402
import history  # noqa: E402
from throughput import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    console,
    drain_figures,
    fill,
    machine,
    percentile,
    problems_in,
    save_document,
    source_version,
    start_worker,
    warn_if_busy,
)

from roadie.app import WORKER_CONNECTIONS  # noqa: E402

BACKENDS = {"postgres": "PostgreSQL", "sqlite": "SQLite"}
PARTS = ("l1", "l2", "l4")
QUEUE = bench_tasks.QUEUE
FILL_BATCH = 1000  # enqueue_many batch for L1's jobs
CHUNK = history.CHUNK  # rows per INSERT statement for L4's backlog
CONNECTION_HEADROOM = 5  # left free on PostgreSQL for this process's own pool and the sampler
SETTLE_SECONDS = 0.5  # after every process registered: their listeners and claim loops are idle
LOAD_TICK = 0.01  # L2's load: one enqueue_many every 10 ms
L2_PROCESSES = 2


# -- the two databases ---------------------------------------------------------------------------


class _Polling:
    """What both load targets ask the same way, over their kept-open `_poll` connection."""

    _poll: Any = None

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        raise NotImplementedError

    def teardown(self) -> None:
        if self._poll is not None:
            self._poll.close()
            self._poll = None
        super().teardown()

    def workers_alive(self) -> int:
        return self.scalar("SELECT count(*) FROM roadie_workers WHERE stopped_at IS NULL")

    def open_jobs(self) -> int:
        return self.scalar("SELECT count(*) FROM roadie_jobs WHERE state IN ('pending', 'running')")


class LoadSQLite(_Polling, history.HistorySQLite):
    """SQLite: history's target (jobs after a mark) plus what the load parts ask of it."""

    _poll: sqlite3.Connection | None = None

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """One value, over a connection kept open: the waits poll with it."""
        if self._poll is None:
            self._poll = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        return self._poll.execute(sql, params).fetchone()[0]

    def db_now(self) -> float:
        return self.scalar("SELECT (julianday('now') - 2440587.5) * 86400.0")

    def finished_between(self, start: float, end: float) -> int:
        return self.scalar(
            "SELECT count(*) FROM roadie_jobs WHERE finished_at >= ? AND finished_at < ?",
            (start, end),
        )

    def latencies(self) -> list[tuple[int, float | None]]:
        """(id, started_at - created_at in s) of the jobs after the mark."""
        with self._conn() as conn:
            return conn.execute(
                "SELECT id, started_at - created_at FROM roadie_jobs WHERE id > ?",
                (self.after_id,),
            ).fetchall()

    def insert_pending(self, rows: int, queue: str, task: str) -> None:
        """`rows` pending jobs as `enqueue_many` would make them, 50,000 per statement."""
        sql = """
            WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n),
            clock(t) AS (SELECT (julianday('now') - 2440587.5) * 86400.0)
            INSERT INTO roadie_jobs (queue, task, args, priority, max_attempts, created_at, run_at)
            SELECT :queue, :task, '{}', 0, 3, clock.t, clock.t FROM s, clock
        """
        with self._conn() as conn:
            for start in range(0, rows, CHUNK):
                conn.execute("BEGIN")
                conn.execute(sql, {"n": min(CHUNK, rows - start), "queue": queue, "task": task})
                conn.execute("COMMIT")

    def analyze(self) -> None:
        with self._conn() as conn:
            conn.execute("ANALYZE")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def drain_stats(self, launch: float) -> dict[str, Any]:
        """The backlog's drain, in SQL (a million rows stay in the database)."""
        with self._conn() as conn:
            total, complete, attempts, first, last = conn.execute(
                "SELECT count(*), sum(state = 'complete'), sum(attempt), min(started_at),"
                " max(finished_at) FROM roadie_jobs"
            ).fetchone()
            workers = conn.execute(
                "SELECT count(*) FROM roadie_jobs WHERE state = 'complete'"
                " GROUP BY json_extract(attempts, '$[#-1].worker') ORDER BY 1 DESC"
            ).fetchall()
            windows = conn.execute(
                "SELECT CAST((finished_at - ?) / 10 AS INTEGER) AS w, count(*) FROM roadie_jobs"
                " WHERE finished_at IS NOT NULL GROUP BY w ORDER BY w",
                (launch,),
            ).fetchall()
        return _drain_stats(total, complete, attempts, first, last, launch, workers, windows)

    def connections(self) -> None:
        """SQLite has no server connections to count."""
        return None


class LoadPostgres(_Polling, history.HistoryPostgres):
    """PostgreSQL: history's target (jobs after a mark) plus what the load parts ask of it."""

    _poll: psycopg.Connection | None = None

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        """One row, over a connection kept open (autocommit: each query sees the latest)."""
        if self._poll is None:
            self._poll = psycopg.connect(self.url, autocommit=True)
        return self._poll.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.one(sql, params)[0]

    def db_now(self) -> float:
        return self.scalar("SELECT extract(epoch FROM clock_timestamp())::float8")

    def finished_between(self, start: float, end: float) -> int:
        return self.scalar(
            "SELECT count(*) FROM roadie_jobs"
            " WHERE finished_at >= to_timestamp(%s) AND finished_at < to_timestamp(%s)",
            (start, end),
        )

    def latencies(self) -> list[tuple[int, float | None]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT id, extract(epoch FROM started_at - created_at)::float8"
                " FROM roadie_jobs WHERE id > %s",
                (self.after_id,),
            ).fetchall()

    def insert_pending(self, rows: int, queue: str, task: str) -> None:
        """`rows` pending jobs as `enqueue_many` would make them, 50,000 per statement."""
        sql = """
            INSERT INTO roadie_jobs (queue, task, args, priority, max_attempts, created_at, run_at)
            SELECT %(queue)s, %(task)s, '{}'::json, 0, 3, now(), now()
            FROM generate_series(1, %(n)s::bigint)
        """
        with psycopg.connect(self.url, autocommit=True) as conn:
            for start in range(0, rows, CHUNK):
                conn.execute(sql, {"n": min(CHUNK, rows - start), "queue": queue, "task": task})

    def analyze(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("ANALYZE roadie_jobs")

    def drain_stats(self, launch: float) -> dict[str, Any]:
        with psycopg.connect(self.url) as conn:
            total, complete, attempts, first, last = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE state = 'complete'), sum(attempt),"
                " extract(epoch FROM min(started_at))::float8,"
                " extract(epoch FROM max(finished_at))::float8 FROM roadie_jobs"
            ).fetchone()
            workers = conn.execute(
                "SELECT count(*) FROM roadie_jobs WHERE state = 'complete'"
                " GROUP BY attempts -> -1 ->> 'worker' ORDER BY 1 DESC"
            ).fetchall()
            windows = conn.execute(
                "SELECT floor((extract(epoch FROM finished_at) - %s) / 10)::int AS w, count(*)"
                " FROM roadie_jobs WHERE finished_at IS NOT NULL GROUP BY w ORDER BY w",
                (launch,),
            ).fetchall()
        return _drain_stats(total, complete, attempts, first, last, launch, workers, windows)

    CONNECTIONS = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'roadie'"
    )

    def connections(self) -> int:
        """Connections of roadie's (its application_name) to the bench database now."""
        return self.scalar(self.CONNECTIONS)

    def room(self) -> dict[str, int]:
        """The server's connection budget now, between drains: what other clients leave for
        worker processes, less CONNECTION_HEADROOM for this process's own connections."""
        limit, reserved, used = self.one(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            "  AND datname IS DISTINCT FROM current_database())"
        )
        return {
            "max_connections": limit,
            "superuser_reserved_connections": reserved,
            "in_use_elsewhere": used,
            "free": limit - reserved - used - CONNECTION_HEADROOM,
        }


Target = LoadSQLite | LoadPostgres


def _drain_stats(
    total: int,
    complete: int | None,
    attempts: int | None,
    first: float | None,
    last: float | None,
    launch: float,
    workers: list[tuple[int]],
    windows: list[tuple[int, int]],
) -> dict[str, Any]:
    steady = last - first if first is not None and last is not None else None
    return {
        "jobs": total,
        "complete": complete or 0,
        "extra_attempts": (attempts or 0) - total,
        "steady_seconds": steady,
        "jobs_per_s": (complete or 0) / steady if steady else None,
        "time_to_empty_seconds": last - launch if last is not None else None,
        "jobs_per_worker": [row[0] for row in workers],
        "finished_per_10s": [row[1] for row in windows],
    }


def per_process_connections(concurrency: int) -> int:
    """A worker process's most PostgreSQL connections: its pool (roadie.app.App.run_worker
    raises it to concurrency + WORKER_CONNECTIONS) and the listener beside the pool."""
    return max(bench_tasks.app.pool_size, concurrency + WORKER_CONNECTIONS) + 1


# -- running workers -----------------------------------------------------------------------------


def stop(worker: subprocess.Popen[bytes]) -> int:
    """SIGTERM (a graceful stop of every process), SIGKILL if it does not end in 60 s."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


@contextmanager
def running(
    target: Target, processes: int, concurrency: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`roadie worker --processes P` (not burst), yielded once every process has registered."""
    worker = start_worker(target, processes, concurrency, burst=False, log=log)
    try:
        wait_until(
            lambda: target.workers_alive() >= processes or worker.poll() is not None,
            60,
            f"{processes} worker processes to register",
        )
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}; see {log}")
        time.sleep(SETTLE_SECONDS)
        yield worker
    finally:
        stop(worker)  # its returncode is set from here on


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """throughput.wait_until's loop at 10 polls a second: these waits last seconds, and on 2
    cores a poll every 20 ms would take its share from the workers measured."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Sampler(threading.Thread):
    """Peak of roadie's PostgreSQL connections to the bench database, every 50 ms, over a
    connection of its own (not named roadie, so not counted)."""

    def __init__(self, target: LoadPostgres) -> None:
        super().__init__(daemon=True)
        self.url = target.url
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.wait(0.05):
                count = conn.execute(LoadPostgres.CONNECTIONS).fetchone()[0]
                self.peak = max(self.peak, count)


def gated_drain(
    target: Target, n: int, processes: int, concurrency: int, logs: Path
) -> dict[str, Any]:
    """N jobs in a paused queue, P processes registered, then the queue resumed: steady
    jobs/s from the first start to the last finish (database clock)."""
    admin = bench_tasks.app.admin
    target.reset()
    target.after_id = 0
    log = logs / f"{target.name}-l1-{processes}p-{time.time_ns()}.log"
    admin.pause(QUEUE)
    sampler = Sampler(target) if isinstance(target, LoadPostgres) else None
    try:
        fill(n, FILL_BATCH)
        own = target.connections() or 0  # this process's pool, before any worker
        with running(target, processes, concurrency, log) as worker:
            if sampler:
                sampler.start()
            admin.resume(QUEUE)
            wait_until(lambda: target.open_jobs() == 0, 600, "the drain")
    finally:
        if sampler:
            sampler.done.set()
        admin.resume(QUEUE)
    return {
        "jobs": n,
        "processes": processes,
        "concurrency": concurrency,
        "exit_code": worker.returncode,
        **drain_figures(target.job_times()),
        "peak_worker_connections": sampler.peak - own if sampler else None,
        "worker_log_problems": problems_in(log)[:20],
    }


# -- L1 ------------------------------------------------------------------------------------------


def l1_scaling(target: Target, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """A gated drain per process count, stopping at the first count that cannot fit."""
    points: list[dict[str, Any]] = []
    stopped = None
    for processes in args.processes:
        if isinstance(target, LoadPostgres):
            room = target.room()
            need = processes * per_process_connections(args.concurrency)
            if need > room["free"]:
                stopped = (
                    f"{processes} processes may open {need} connections "
                    f"({per_process_connections(args.concurrency)} each: a pool of "
                    f"max({bench_tasks.app.pool_size}, {args.concurrency} + "
                    f"{WORKER_CONNECTIONS}) and a listener) but {room['free']} are free "
                    f"(max_connections {room['max_connections']} - "
                    f"{room['superuser_reserved_connections']} reserved - "
                    f"{room['in_use_elsewhere']} of other clients - {CONNECTION_HEADROOM} "
                    "for this process)"
                )
                console.print(f"  [yellow]{target.name}: L1 stops: {stopped}[/yellow]")
                break
        console.print(f"  {target.name}: L1 drain, {processes} process(es) ...", end=" ")
        point = gated_drain(target, args.n, processes, args.concurrency, logs)
        points.append(point)
        console.print(_rate(point))
    return {"points": points, "stopped": stopped}


def _rate(point: dict[str, Any]) -> str:
    rate = point.get("jobs_per_s")
    text = f"{rate:,.0f} jobs/s" if rate else "failed"
    if point.get("complete") != point.get("jobs"):
        text += f" [red]({point.get('complete')}/{point.get('jobs')} complete)[/red]"
    if point.get("peak_worker_connections"):
        text += f", peak {point['peak_worker_connections']} connections"
    return text


# -- L2 ------------------------------------------------------------------------------------------


def offer_load(rate: float, stopping: threading.Event, sent: list[int]) -> None:
    """Enqueue no-op jobs at `rate` a second: every LOAD_TICK, one enqueue_many of what is due
    (a late tick catches up, so the average holds)."""
    began = time.monotonic()
    tick = 0
    while not stopping.is_set():
        due = min(int(rate * (time.monotonic() - began)) - sent[0], 10 * FILL_BATCH)
        if due > 0:
            bench_tasks.noop.enqueue_many([{}] * due)
            sent[0] += due
        tick += 1
        stopping.wait(max(0.0, began + tick * LOAD_TICK - time.monotonic()))


def offer_probes(gap: float, stopping: threading.Event, ids: list[int]) -> None:
    """One job at a time, exponential gaps (a Poisson stream samples the load without bias)."""
    rng = random.Random(7)
    while not stopping.wait(rng.expovariate(1 / gap)):
        ids.append(bench_tasks.noop.enqueue().id)


def l2_latency(
    target: Target, max_rate: float, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    """2 processes under `fraction` of `max_rate`; the probes' enqueue-to-start latency."""
    rate = args.fraction * max_rate
    target.reset()
    target.after_id = 0
    log = logs / f"{target.name}-l2-{time.time_ns()}.log"
    load_stop, probe_stop = threading.Event(), threading.Event()
    sent: list[int] = [0]
    probes: list[int] = []
    load = threading.Thread(target=offer_load, args=(rate, load_stop, sent), daemon=True)
    prober = threading.Thread(
        target=offer_probes, args=(args.probe_gap_ms / 1000, probe_stop, probes), daemon=True
    )
    with running(target, L2_PROCESSES, args.concurrency, log) as worker:
        try:
            load.start()
            time.sleep(args.l2_warmup)
            target.after_id = target.max_id()
            sent_before, start = sent[0], target.db_now()
            prober.start()
            time.sleep(args.l2_seconds)
            probe_stop.set()
            prober.join()
            sent_during, end = sent[0] - sent_before, target.db_now()
            backlog = target.open_jobs()
        finally:
            probe_stop.set()
            load_stop.set()
            load.join()
        wait_until(lambda: target.open_jobs() == 0, 120, "the load to drain")
    window = end - start
    latency = dict(target.latencies())
    probe_ms = sorted(latency[i] * 1000 for i in probes if latency.get(i) is not None)
    all_ms = sorted(v * 1000 for v in latency.values() if v is not None)
    return {
        "processes": L2_PROCESSES,
        "concurrency": args.concurrency,
        "max_rate": max_rate,
        "fraction": args.fraction,
        "target_rate": rate,
        "window_seconds": window,
        "offered_jobs_per_s": (sent_during + len(probes)) / window,
        "served_jobs_per_s": target.finished_between(start, end) / window,
        "open_jobs_at_end": backlog,
        "probes": len(probe_ms),
        "probe_gap_ms": args.probe_gap_ms,
        "p50_ms": percentile(probe_ms, 50),
        "p99_ms": percentile(probe_ms, 99),
        "max_ms": probe_ms[-1] if probe_ms else None,
        "all_jobs": len(all_ms),
        "all_p50_ms": percentile(all_ms, 50),
        "all_p99_ms": percentile(all_ms, 99),
        "exit_code": worker.returncode,
        "worker_log_problems": problems_in(log)[:20],
    }


# -- L4 ------------------------------------------------------------------------------------------


def l4_backlog(target: Target, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """--rows pending jobs inserted by SQL, then `roadie worker --burst --processes 2`."""
    target.reset()
    target.after_id = 0
    console.print(f"  {target.name}: L4 inserting {args.rows:,} pending jobs ...", end=" ")
    began = time.perf_counter()
    target.insert_pending(args.rows, QUEUE, bench_tasks.noop.name)
    insert_seconds = time.perf_counter() - began
    began = time.perf_counter()
    target.analyze()
    analyze_seconds = time.perf_counter() - began
    console.print(
        f"{insert_seconds:.1f} s (+ {analyze_seconds:.1f} s ANALYZE); draining ...", end=" "
    )
    log = logs / f"{target.name}-l4-{time.time_ns()}.log"
    launch = target.db_now()
    began = time.perf_counter()
    worker = start_worker(target, args.l4_processes, args.concurrency, burst=True, log=log)
    try:
        code = worker.wait(timeout=args.l4_timeout)
    except subprocess.TimeoutExpired:
        code = stop(worker)
        console.print(f"[red]timed out after {args.l4_timeout} s[/red]", end=" ")
    wall = time.perf_counter() - began
    stats = target.drain_stats(launch)
    console.print(f"{_rate(stats)}, empty after {stats['time_to_empty_seconds'] or 0:.1f} s")
    return {
        "rows": args.rows,
        "processes": args.l4_processes,
        "concurrency": args.concurrency,
        "insert_seconds": insert_seconds,
        "insert_rows_per_s": args.rows / insert_seconds,
        "analyze_seconds": analyze_seconds,
        "exit_code": code,
        "wall_seconds": wall,
        **stats,
        "worker_log_problems": problems_in(log)[:20],
    }


# -- one backend ---------------------------------------------------------------------------------


def measure_backend(backend: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    target: Target = (
        LoadSQLite()
        if backend == "sqlite"
        else LoadPostgres(args.postgres_url, args.postgres_database)
    )
    target.setup()
    app = bench_tasks.app
    result: dict[str, Any] = {"backend": backend, "machine": machine()}
    try:
        app.use_database(target.url)
        app.migrate()
        result["database"] = target.describe()
        if isinstance(target, LoadPostgres):
            result["connections"] = {
                **target.room(),
                "per_process_at_most": per_process_connections(args.concurrency),
            }
        if "l1" in args.only:
            result["l1"] = l1_scaling(target, args, logs)
        if "l2" in args.only:
            result["l2"] = run_l2(target, result.get("l1"), args, logs)
        if "l4" in args.only:
            result["l4"] = l4_backlog(target, args, logs)
    finally:
        app.close()
        target.teardown()
    return result


def run_l2(
    target: Target, l1: dict[str, Any] | None, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    """L2 at a fraction of the 2-process drain rate: L1's, or a drain measured here."""
    points = [p for p in (l1 or {}).get("points", []) if p["processes"] == L2_PROCESSES]
    if points and points[0]["jobs_per_s"] and points[0]["complete"] == points[0]["jobs"]:
        max_rate, source = points[0]["jobs_per_s"], "L1"
    else:
        console.print(f"  {target.name}: L2 max rate, {L2_PROCESSES} processes ...", end=" ")
        drain = gated_drain(target, args.n, L2_PROCESSES, args.concurrency, logs)
        console.print(_rate(drain))
        max_rate, source = drain["jobs_per_s"], "measured for L2"
        if not max_rate:
            raise RuntimeError("L2: the drain that sets the load failed")
    console.print(
        f"  {target.name}: L2 load {args.fraction:.0%} of {max_rate:,.0f} jobs/s for "
        f"{args.l2_seconds:g} s ...",
        end=" ",
    )
    result = l2_latency(target, max_rate, args, logs)
    result["max_rate_from"] = source
    offered, served = result["offered_jobs_per_s"], result["served_jobs_per_s"]
    p50, p99 = result["p50_ms"] or 0, result["p99_ms"] or 0
    console.print(
        f"offered {offered:,.0f}/s, served {served:,.0f}/s, probes p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms"
    )
    if offered < 0.9 * result["target_rate"]:
        console.print("  [yellow]L2: this process could not offer the target load[/yellow]")
    if result["open_jobs_at_end"] > result["target_rate"]:  # over a second of load waiting
        console.print("  [yellow]L2: the workers fell behind the load (a backlog grew)[/yellow]")
    return result


# -- table, arguments, main ----------------------------------------------------------------------


# (key, label, unit, format) of L2's and L4's rows; labels take the settings in braces.
L2_ROWS = [
    ("max_rate", "max drain rate, 2 processes", "jobs/s", ",.0f"),
    ("offered_jobs_per_s", "load offered (target {fraction:.0%} of max)", "jobs/s", ",.0f"),
    ("served_jobs_per_s", "load served", "jobs/s", ",.0f"),
    ("p50_ms", "probe enqueue-to-start p50", "ms", ",.1f"),
    ("p99_ms", "probe enqueue-to-start p99", "ms", ",.1f"),
    ("all_p99_ms", "every job's enqueue-to-start p99", "ms", ",.1f"),
]
L4_ROWS = [
    ("insert_seconds", "insert {rows:,} pending jobs", "s", ",.1f"),
    ("jobs_per_s", "drain, {l4_processes} processes x {concurrency}, steady", "jobs/s", ",.0f"),
    ("time_to_empty_seconds", "time to empty (workers launched to last finish)", "s", ",.1f"),
]


def cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def l1_cell(result: dict[str, Any], processes: int) -> str:
    points = {p["processes"]: p for p in result.get("l1", {}).get("points", [])}
    point = points.get(processes)
    if point is None:
        return "not run"
    return cell(point["jobs_per_s"], ",.0f") if point["complete"] == point["jobs"] else "failed"


def table_rows(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[list[str]]:
    """(part, measurement, unit, one cell per backend)."""
    labels = vars(args)
    rows: list[list[str]] = []
    if "l1" in args.only:
        for processes in args.processes:
            label = f"drain, {processes} process(es) x {args.concurrency}, steady"
            rows.append(["L1", label, "jobs/s", *(l1_cell(r, processes) for r in results.values())])
    for part, specs in (("l2", L2_ROWS), ("l4", L4_ROWS)):
        if part not in args.only:
            continue
        for key, label, unit, fmt in specs:
            cells = [cell(r.get(part, {}).get(key), fmt) for r in results.values()]
            rows.append([part.upper(), label.format(**labels), unit, *cells])
    return rows


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """Print the rich table; return it as Markdown (for bench/README.md)."""
    header = ["part", "measurement", "unit", *(BACKENDS[b] for b in results)]
    body = table_rows(results, args)
    table = Table(
        title="roadie under load (FAULTS.md L1, L2, L4)" + (" --quick" if args.quick else "")
    )
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 3 else "right")
    for row in body:
        table.add_row(*row)
    Console(highlight=False, width=None if sys.stdout.isatty() else 150).print(table)
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] * 3 + ["---:"] * len(results)) + " |",
    ]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run: l1,l2,l4 (all)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--processes", default=None, help="L1's process counts (1,2,4,8,16)")
    parser.add_argument("-n", type=int, default=None, help="jobs per L1 drain (20000; quick 2000)")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="per process (4)")
    parser.add_argument("--fraction", type=float, default=0.5, help="L2's load / max rate (0.5)")
    parser.add_argument("--l2-seconds", type=float, default=None, help="L2's window (20; quick 3)")
    parser.add_argument("--l2-warmup", type=float, default=None, help="load before it (3; quick 1)")
    parser.add_argument("--probe-gap-ms", type=float, default=20, help="mean probe gap (20)")
    parser.add_argument(
        "--rows", type=int, default=None, help="L4's backlog (1000000; quick 20000)"
    )
    parser.add_argument("--l4-processes", type=int, default=2, help="L4's drain processes (2)")
    parser.add_argument("--l4-timeout", type=float, default=1800, help="L4's drain limit (1800 s)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server to create the bench database on (or ROADIE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--postgres-database", default="roadie_bench_load", help="made and dropped")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    args.only = [part.strip().lower() for part in args.only.split(",") if part.strip()]
    if not args.only or set(args.only) - set(PARTS):
        parser.error(f"--only takes a comma list of {', '.join(PARTS)}")
    quick = args.quick
    args.processes = [
        int(p) for p in (args.processes or ("1,2,4" if quick else "1,2,4,8,16")).split(",")
    ]
    args.n = args.n or (2_000 if quick else 20_000)
    args.l2_seconds = args.l2_seconds or (3.0 if quick else 20.0)
    args.l2_warmup = args.l2_warmup if args.l2_warmup is not None else (1.0 if quick else 3.0)
    args.rows = args.rows or (20_000 if quick else 1_000_000)
    if min([*args.processes, args.n, args.concurrency, args.rows, args.l4_processes]) < 1:
        parser.error("counts must be at least 1")
    if not 0 < args.fraction <= 1 or args.l2_seconds <= 0 or args.probe_gap_ms <= 0:
        parser.error("--fraction must be in (0, 1]; --l2-seconds and --probe-gap-ms above 0")
    return args


def exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop the workers this bench started
    (a killed bench would leave them running) and drop its database."""
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    backends = ["postgres", "sqlite"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    warn_if_busy()
    load_before = os.getloadavg()
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="roadie-bench-logs-") as logs_dir:
        for backend in backends:
            console.print(f"[bold]{BACKENDS[backend]}[/bold]")
            try:
                results[backend] = measure_backend(backend, args, Path(logs_dir))
            except Exception as exc:  # one broken backend must not lose the other's figures
                console.print(f"[red]{backend} failed: {exc!r}[/red]")
                results[backend] = {"backend": backend, "failed": repr(exc)}
                failed = True
    markdown = print_table(results, args)
    elapsed = time.monotonic() - started
    for result in results.values():
        if result.get("l1", {}).get("stopped"):
            console.print(f"{BACKENDS[result['backend']]} L1 stopped: {result['l1']['stopped']}")
    console.print(f"took {elapsed:.0f} s; load average before {load_before[0]:.2f}")
    if args.markdown:
        print(markdown)
    if not args.no_save:
        settings = {
            key: getattr(args, key)
            for key in ("only", "quick", "processes", "n", "concurrency", "fraction",
                        "l2_seconds", "l2_warmup", "probe_gap_ms", "rows", "l4_processes")
        }  # fmt: skip
        document = {
            "timestamp": stamp,
            "settings": settings,
            "seconds": elapsed,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "source": source_version(),
            "table_markdown": markdown,
            "results": results,
        }
        path, latest = save_document("load", stamp, document)
        console.print(
            f"wrote {path.relative_to(HERE.parent)} and {latest.relative_to(HERE.parent)}"
        )
    return 1 if failed or not all_complete(results) else 0


def all_complete(results: dict[str, dict[str, Any]]) -> bool:
    """Every drain finished every job (a bench that lost jobs must not pass quietly)."""
    drains = [
        point
        for result in results.values()
        for point in [*result.get("l1", {}).get("points", []), result.get("l4")]
        if point
    ]
    return all(point["complete"] == point["jobs"] for point in drains)


if __name__ == "__main__":
    sys.exit(main())
