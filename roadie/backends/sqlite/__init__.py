"""The embedded engine: one file, WAL, one writer connection per process behind a lock.

Every write runs in `BEGIN IMMEDIATE`, so a writer takes the write lock before it reads and never
meets SQLITE_BUSY on a read-to-write upgrade; `busy_timeout` makes the others wait their turn.
Reads use a connection per thread, so a listing never waits for the writer lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from roadie.backends.base import (
    SCHEMA,
    JobQuery,
    Migration,
    Transaction,
    WorkerInfo,
    encode_batch,
    load_migrations,
    load_queries,
    order_inserted,
    row_to_job,
)
from roadie.clock import Clock
from roadie.errors import DatabaseUnavailable, SchemaMissing
from roadie.jobs import Fence, Job, NewJob

QUERIES = load_queries(__name__)
BUSY_TIMEOUT_MS = 10_000
WAKE_POLL_SECONDS = 0.005


def to_time(value: Any) -> datetime | None:
    """Stored unix seconds, or an ISO string from an attempt record, as an aware datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return datetime.fromtimestamp(value, UTC)


def _job(row: Any) -> Job:
    return row_to_job(row, to_time, json.loads)


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: str, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._writer: sqlite3.Connection | None = None
        self._writer_lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from None
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "reader", None)
        if conn is None:
            conn = self._local.reader = self._connect()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The process's writer connection inside `BEGIN IMMEDIATE ... COMMIT`."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = self._connect()
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise DatabaseUnavailable(f"SQLite write lock unavailable: {exc}") from None
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                conn.execute("ROLLBACK")
                raise DatabaseUnavailable(f"SQLite commit failed: {exc}") from None

    def _params(self, **params: Any) -> dict[str, Any]:
        return {"now": _epoch(self.clock.now()), **params}

    def _execute(self, conn: sqlite3.Connection, name: str, **params: Any) -> sqlite3.Cursor:
        try:
            return conn.execute(QUERIES[name], self._params(**params))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise SchemaMissing() from None
            raise DatabaseUnavailable(f"SQLite {name} failed: {exc}") from None

    def _rows(self, conn: sqlite3.Connection, name: str, **params: Any) -> list[sqlite3.Row]:
        return self._execute(conn, name, **params).fetchall()

    def _read(self, name: str, **params: Any) -> list[sqlite3.Row]:
        return self._rows(self._reader(), name, **params)

    def _written(self, name: str, **params: Any) -> list[sqlite3.Row]:
        with self._write() as conn:
            return self._rows(conn, name, **params)

    def _changed(self, name: str, **params: Any) -> bool:
        with self._write() as conn:
            return self._execute(conn, name, **params).rowcount == 1

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._writer = None
        self._local = threading.local()

    # -- migrations --------------------------------------------------------------------------

    def migrations(self) -> list[Migration]:
        return load_migrations(__name__)

    def migration_versions(self) -> set[int]:
        with self._write() as conn:
            return self._applied(conn)

    @staticmethod
    def _applied(conn: sqlite3.Connection) -> set[int]:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS roadie_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        return {row[0] for row in conn.execute("SELECT version FROM roadie_migrations")}

    def migration_apply(self, migration: Migration) -> bool:
        """Apply one migration unless applied; the write lock makes racing processes take turns."""
        with self._write() as conn:
            if migration.version in self._applied(conn):
                return False
            for statement in _split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO roadie_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            return True

    def schema_columns(self) -> dict[str, tuple[str, ...]]:
        conn = self._reader()
        return {
            table: tuple(row["name"] for row in conn.execute(f"PRAGMA table_info({table})"))
            for table in SCHEMA
        }

    # -- jobs --------------------------------------------------------------------------------

    def job_insert(self, jobs: Sequence[NewJob]) -> list[Job]:
        batch = encode_batch(jobs, _epoch)
        with self._write() as conn:
            rows = self._rows(conn, "job_insert", jobs=batch)
            inserted = [_job(row) for row in rows]

            def existing(key: str) -> Job | None:
                found = self._rows(conn, "job_get_by_idempotency_key", key=key)
                return _job(found[0]) if found else None

            return order_inserted(jobs, inserted, existing)

    def job_get(self, job_id: int) -> Job | None:
        rows = self._read("job_get", id=job_id)
        return _job(rows[0]) if rows else None

    def job_list(self, query: JobQuery) -> list[Job]:
        rows = self._read(
            "job_list", state=query.state, queue=query.queue, task=query.task, limit=query.limit
        )
        return [_job(row) for row in rows]

    def job_claim(self, worker_id: str, queue: str, limit: int, lease: float) -> list[Job]:
        rows = self._written(
            "job_claim", worker_id=worker_id, queue=queue, limit=limit, lease=lease
        )
        return sorted((_job(row) for row in rows), key=lambda j: (-j.priority, j.id))

    def job_complete(self, fence: Fence, result_json: str, tx: Transaction | None = None) -> bool:
        params = self._params(**_fence(fence), result=result_json)
        if tx is None:
            return self._changed("job_complete", **params)
        return tx.connection.execute(QUERIES["job_complete"], params).rowcount == 1

    def job_retry(
        self, fence: Fence, delay: float, outcome: str, error: str | None, traceback: str | None
    ) -> bool:
        return self._changed(
            "job_retry",
            **_fence(fence),
            delay=delay,
            outcome=outcome,
            error=error,
            traceback=traceback,
        )

    def job_fail(
        self, fence: Fence, failure: str, outcome: str, error: str | None, traceback: str | None
    ) -> bool:
        return self._changed(
            "job_fail",
            **_fence(fence),
            failure=failure,
            outcome=outcome,
            error=error,
            traceback=traceback,
        )

    def job_progress(self, fence: Fence, progress_json: str) -> bool:
        return self._changed("job_progress", **_fence(fence), progress=progress_json)

    def job_list_timed_out(self) -> list[Job]:
        return [_job(row) for row in self._read("job_list_timed_out")]

    # -- leases ------------------------------------------------------------------------------

    def lease_renew(
        self, worker_id: str, fences: Sequence[Fence], lease: float
    ) -> set[tuple[int, int]]:
        if not fences:
            return set()
        ids = json.dumps([fence.job_id for fence in fences])
        rows = self._written("lease_renew", worker_id=worker_id, ids=ids, lease=lease)
        return {(row["id"], row["attempt"]) for row in rows}

    def lease_reap(self, max_lost: int) -> list[Job]:
        return [_job(row) for row in self._written("lease_reap", max_lost=max_lost)]

    # -- workers -----------------------------------------------------------------------------

    def worker_heartbeat(self, info: WorkerInfo) -> None:
        self._written(
            "worker_heartbeat",
            id=info.id,
            host=info.host,
            pid=info.pid,
            queues=json.dumps(info.queues),
            concurrency=info.concurrency,
        )

    def worker_stop(self, worker_id: str) -> None:
        self._written("worker_stop", id=worker_id)

    def worker_list(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                queues=json.loads(row["queues"]),
                concurrency=row["concurrency"],
                started_at=to_time(row["started_at"]),
                heartbeat_at=to_time(row["heartbeat_at"]),
                stopped_at=to_time(row["stopped_at"]),
            )
            for row in self._read("worker_list")
        ]

    # -- transactions and wake-ups -----------------------------------------------------------

    def transaction_begin(self) -> Transaction:
        """A write transaction on a connection of its own, for a task's effects and completion."""
        conn = getattr(self._local, "tx", None)
        if conn is None:
            conn = self._local.tx = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(f"SQLite write lock unavailable: {exc}") from None
        return Transaction(
            connection=conn,
            commit=lambda: conn.execute("COMMIT"),
            rollback=lambda: conn.execute("ROLLBACK") if conn.in_transaction else None,
        )

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> bool:
        """Wait until another connection commits (PRAGMA data_version moves), or the timeout."""
        conn = getattr(self._local, "watch", None)
        if conn is None:
            conn = self._local.watch = self._connect()
        deadline = time.monotonic() + timeout
        try:
            start = conn.execute("PRAGMA data_version").fetchone()[0]
            while time.monotonic() < deadline:
                time.sleep(WAKE_POLL_SECONDS)
                if conn.execute("PRAGMA data_version").fetchone()[0] != start:
                    return True
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"SQLite wait failed: {exc}") from None
        return False


def _fence(fence: Fence) -> dict[str, Any]:
    return {"id": fence.job_id, "attempt": fence.attempt, "worker_id": fence.worker_id}


def _split_statements(script: str) -> list[str]:
    """A migration's statements, split where sqlite3 says a statement is complete."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        statements.append(current.strip())
    return statements
