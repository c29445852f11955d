"""roadie's drain rate with a big finished history in the jobs table, vs an empty table.

    .venv/bin/python bench/history.py [--backend sqlite|postgres|both] [--rows 1000000]
                                      [-n 10000] [--repeat 3]

Issue 7's figure: "drain rate with 1,000,000 finished jobs in the table, vs empty (target >= 90 %)".
Per backend, on a fresh database:
1. history: bulk-insert --rows finished (`complete`) jobs into one database, one SQL statement per
   50,000 rows over the backend's own connection (`generate_series` on PostgreSQL, a recursive CTE
   on SQLite), with the columns a worker writes (queue, task, args '{}', attempt 1,
   created/started/finished spread over the past 3 days, an attempts record), then ANALYZE;
2. --repeat rounds, each one drain of N no-op jobs on an empty twin database (emptied before
   each) and one on the history database (the drained jobs stay: they are history too), with a
   real `roadie worker --burst --processes W` (the drain of bench/throughput.py: steady jobs/s =
   N / (last finished_at - first started_at), database clock). Alternating puts the machine's
   minute-to-minute drift on both sides alike; the medians are compared.
The ratio is history / empty (the target is >= 0.9). The history is younger than roadie's
default retention (7 days), so the workers' pruner keeps it.

SQLite runs on files in a temporary folder; PostgreSQL in two databases this script creates and
drops (`roadie_bench_history` and `roadie_bench_history_empty` by default; no other database is
touched). The result goes to
bench/results/history-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import throughput
from throughput import (
    DEFAULT_POSTGRES_URL,
    RESULTS,
    JobRow,
    PostgresTarget,
    SQLiteTarget,
    console,
    machine,
    measure_drain,
    source_version,
    warn_if_busy,
)

CHUNK = 50_000  # rows per INSERT statement
SPREAD = 3 * 86400.0  # the history's created_at spans the past 3 days
FILL_BATCH = 1000  # enqueue_many batch for the pending jobs to drain
HISTORY_WORKER = "bench-history:0:000000"  # the attempts record's worker id

# -- the two databases, seeing only the jobs after a mark -----------------------------------------


class HistorySQLite(SQLiteTarget):
    """SQLite with job_times() limited to jobs after `after_id`, and a bulk history insert."""

    after_id = 0

    def job_times(self) -> list[JobRow]:
        with self._conn() as conn:
            return conn.execute(
                "SELECT state, attempt, created_at, started_at, finished_at,"
                " json_extract(attempts, '$[#-1].worker') FROM roadie_jobs WHERE id > ?"
                " ORDER BY id",
                (self.after_id,),
            ).fetchall()

    def max_id(self) -> int:
        with self._conn() as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM roadie_jobs").fetchone()[0]

    def insert_history(self, rows: int, queue: str, task: str) -> None:
        now = time.time()
        # Row i (1..rows) was created SPREAD * (rows - i) / rows seconds ago, started 50-110 ms
        # later, ran 1-10 ms; ids ascend with time like real history.
        sql = """
            WITH RECURSIVE s(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM s WHERE i < :hi),
            t(c, st, fin) AS (
                SELECT :now - :spread * (:rows - i) / :rows - 1.0,
                       :now - :spread * (:rows - i) / :rows - 1.0 + 0.05 + (i % 7) * 0.01,
                       :now - :spread * (:rows - i) / :rows - 1.0 + 0.05 + (i % 7) * 0.01
                           + 0.001 + (i % 10) * 0.001
                FROM s
            )
            INSERT INTO roadie_jobs (queue, task, args, state, attempt, max_attempts, created_at,
                                     run_at, started_at, finished_at, result, attempts)
            SELECT :queue, :task, '{}', 'complete', 1, 3, c, c, st, fin, 'null',
                   json_array(json_object(
                       'attempt', 1, 'worker', :worker,
                       'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', st, 'unixepoch'),
                       'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', fin, 'unixepoch'),
                       'outcome', 'complete', 'error', NULL, 'traceback', NULL))
            FROM t
        """
        with self._conn() as conn:
            for lo in range(1, rows + 1, CHUNK):
                params = {
                    "lo": lo,
                    "hi": min(lo + CHUNK - 1, rows),
                    "now": now,
                    "spread": SPREAD,
                    "rows": float(rows),
                    "queue": queue,
                    "task": task,
                    "worker": HISTORY_WORKER,
                }
                conn.execute("BEGIN")
                conn.execute(sql, params)
                conn.execute("COMMIT")
            conn.execute("ANALYZE")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def size(self) -> dict[str, Any]:
        with self._conn() as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            jobs = conn.execute("SELECT count(*) FROM roadie_jobs").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        return {
            "jobs": jobs,
            "database_bytes": pages * page_size,
            "file_bytes": self.path.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        }


class HistoryPostgres(PostgresTarget):
    """PostgreSQL with job_times() limited to jobs after `after_id`, and a bulk history insert."""

    after_id = 0

    def job_times(self) -> list[JobRow]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT state, attempt, extract(epoch FROM created_at)::float8,"
                " extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8,"
                " attempts -> -1 ->> 'worker' FROM roadie_jobs WHERE id > %s ORDER BY id",
                (self.after_id,),
            ).fetchall()

    def max_id(self) -> int:
        with psycopg.connect(self.url) as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM roadie_jobs").fetchone()[0]

    def insert_history(self, rows: int, queue: str, task: str) -> None:
        sql = """
            INSERT INTO roadie_jobs (queue, task, args, state, attempt, max_attempts, created_at,
                                     run_at, started_at, finished_at, result, attempts)
            SELECT %(queue)s, %(task)s, '{}'::json, 'complete', 1, 3, c, c, st, fin, 'null'::json,
                   jsonb_build_array(jsonb_build_object(
                       'attempt', 1, 'worker', %(worker)s::text,
                       'started_at', to_char(st AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                       'finished_at', to_char(fin AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                       'outcome', 'complete', 'error', NULL, 'traceback', NULL))
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i,
            LATERAL (SELECT %(now)s::timestamptz - make_interval(
                         secs => %(spread)s * (%(rows)s - i) / %(rows)s + 1.0) AS c) AS a,
            LATERAL (SELECT c + make_interval(secs => 0.05 + (i %% 7) * 0.01) AS st) AS b,
            LATERAL (SELECT st + make_interval(secs => 0.001 + (i %% 10) * 0.001) AS fin) AS d
        """
        with psycopg.connect(self.url, autocommit=True) as conn:
            now = conn.execute("SELECT now()").fetchone()[0]
            for lo in range(1, rows + 1, CHUNK):
                conn.execute(
                    sql,
                    {
                        "lo": lo,
                        "hi": min(lo + CHUNK - 1, rows),
                        "now": now,
                        "spread": SPREAD,
                        "rows": float(rows),
                        "queue": queue,
                        "task": task,
                        "worker": HISTORY_WORKER,
                    },
                )
            conn.execute("ANALYZE roadie_jobs")

    def size(self) -> dict[str, Any]:
        with psycopg.connect(self.url) as conn:
            return {
                "jobs": conn.execute("SELECT count(*) FROM roadie_jobs").fetchone()[0],
                "database_bytes": conn.execute(
                    "SELECT pg_database_size(current_database())"
                ).fetchone()[0],
                "jobs_table_bytes": conn.execute(
                    "SELECT pg_total_relation_size('roadie_jobs')"
                ).fetchone()[0],
            }


# -- the measurement -----------------------------------------------------------------------------


def drains(
    target: HistorySQLite | HistoryPostgres,
    args: argparse.Namespace,
    logs: Path,
    label: str,
    empty_first: bool,
) -> list[dict[str, Any]]:
    runs = []
    for i in range(args.repeat):
        if empty_first:
            target.reset()
        target.after_id = target.max_id()
        console.print(f"  {target.name}: {label} drain {i + 1}/{args.repeat} ...", end=" ")
        run = measure_drain(target, args.n, FILL_BATCH, args.workers, args.concurrency, logs)
        console.print(throughput.summary("drain", run))
        runs.append(run)
    return runs


def median_rate(runs: list[dict[str, Any]]) -> float | None:
    rates = [
        run["jobs_per_s"] for run in runs if run["jobs_per_s"] and run["complete"] == run["jobs"]
    ]
    return statistics.median(rates) if len(rates) == len(runs) else None


def measure_backend(
    target: HistorySQLite | HistoryPostgres,
    args: argparse.Namespace,
    logs: Path,
    twin: HistorySQLite | HistoryPostgres,
) -> dict[str, Any]:
    """The history goes into `target`; then drains alternate between `twin` (a database like it,
    without the history) and `target`, one each per round: the machine's speed drifts by a
    third from one minute to the next, and alternating puts the drift on both sides alike."""
    app = throughput.bench_tasks.app
    one_run = argparse.Namespace(**{**vars(args), "repeat": 1})
    empty_runs: list[dict[str, Any]] = []
    history_runs: list[dict[str, Any]] = []
    try:
        app.use_database(twin.url)
        app.migrate()
        app.use_database(target.url)
        app.migrate()
        target.reset()
        console.print(f"  {target.name}: inserting {args.rows:,} finished jobs ...", end=" ")
        began = time.perf_counter()
        target.insert_history(args.rows, throughput.bench_tasks.QUEUE, "noop")
        insert_seconds = time.perf_counter() - began
        history_size = target.size()
        console.print(
            f"{insert_seconds:.1f} s, database {history_size['database_bytes'] / 2**20:,.0f} MiB"
        )
        for round_ in range(args.repeat):
            app.use_database(twin.url)
            label = f"round {round_ + 1}/{args.repeat}, empty table"
            empty_runs += drains(twin, one_run, logs, label, empty_first=True)
            app.use_database(target.url)
            label = f"round {round_ + 1}/{args.repeat}, {args.rows:,} finished"
            history_runs += drains(target, one_run, logs, label, empty_first=False)
        final_size = target.size()
        empty_size = twin.size()
    finally:
        app.close()
    empty, history = median_rate(empty_runs), median_rate(history_runs)
    return {
        "empty_jobs_per_s": empty,
        "history_jobs_per_s": history,
        "ratio": history / empty if empty and history else None,
        "interleaved": True,
        "insert_seconds": insert_seconds,
        "insert_rows_per_s": args.rows / insert_seconds,
        "size_empty_after_drains": empty_size,
        "size_with_history": history_size,
        "size_after_history_drains": final_size,
        "empty_runs": empty_runs,
        "history_runs": history_runs,
    }


def targets(
    backend: str, postgres_url: str, database: str
) -> tuple[HistorySQLite | HistoryPostgres, HistorySQLite | HistoryPostgres]:
    """The database for the history and its empty twin (PostgreSQL: `<database>_empty`)."""
    if backend == "sqlite":
        return HistorySQLite(), HistorySQLite()
    return HistoryPostgres(postgres_url, database), HistoryPostgres(
        postgres_url, f"{database}_empty"
    )


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    from rich.table import Table

    repeat = f"median of {args.repeat} drains" if args.repeat > 1 else "1 drain"
    table = Table(
        title=f"drain rate, N={args.n:,} no-op jobs, {args.workers} processes x "
        f"{args.concurrency} ({repeat})"
    )
    for column in (
        "backend",
        "empty jobs/s",
        f"{args.rows:,} finished jobs/s",
        "ratio",
        "database size",
    ):
        table.add_column(column, justify="right" if column != "backend" else "left")
    for backend, result in results.items():
        m = result.get("measured", {})

        def rate(value: float | None) -> str:
            return "-" if value is None else f"{value:,.0f}"

        ratio = m.get("ratio")
        size = m.get("size_with_history", {}).get("database_bytes")
        table.add_row(
            backend,
            rate(m.get("empty_jobs_per_s")),
            rate(m.get("history_jobs_per_s")),
            "-" if ratio is None else f"{ratio:.0%}",
            "-" if size is None else f"{size / 2**20:,.0f} MiB",
        )
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="finished jobs to insert (1000000)"
    )
    parser.add_argument("-n", type=int, default=10_000, help="jobs per drain (10000)")
    parser.add_argument("--repeat", type=int, default=3, help="drains per table; median (3)")
    parser.add_argument(
        "-w", "--workers", type=int, default=2, help="worker processes for the drain (2)"
    )
    parser.add_argument(
        "-c", "--concurrency", type=int, default=4, help="each process's --concurrency (4)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server to create the bench database on (or ROADIE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--postgres-database",
        default="roadie_bench_history",
        help="created and dropped by this script (roadie_bench_history)",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if min(args.n, args.rows, args.repeat, args.workers, args.concurrency) < 1:
        parser.error("-n, --rows, --repeat, --workers and --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = {
        key: getattr(args, key) for key in ("rows", "n", "repeat", "workers", "concurrency")
    }
    results: dict[str, dict[str, Any]] = {}
    warn_if_busy()
    started = time.monotonic()
    failed = False
    with tempfile.TemporaryDirectory(prefix="roadie-bench-logs-") as logs_dir:
        logs = Path(logs_dir)
        for backend in backends:
            target, twin = targets(backend, args.postgres_url, args.postgres_database)
            target.setup()
            twin.setup()
            host = machine()
            result: dict[str, Any] = {"backend": backend, "machine": host}
            try:
                result["measured"] = measure_backend(target, args, logs, twin)
                result["database"] = target.describe()
            except Exception as exc:  # one broken backend must not lose the other
                console.print(f"[red]{backend} failed: {exc!r}[/red]")
                result["failed"] = repr(exc)
                failed = True
            finally:
                target.teardown()
                twin.teardown()
            results[backend] = result
    print_table(results, args)
    console.print(f"took {time.monotonic() - started:.0f} s")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"history-{stamp}.json"
        document = {
            "timestamp": stamp,
            "settings": settings,
            "source": source_version(),
            "results": results,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        console.print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
