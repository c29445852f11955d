"""The embedded engine: one file, WAL, one writer connection per process behind a lock.

Every write runs in `BEGIN IMMEDIATE`, so a writer takes the write lock before it reads and never
meets SQLITE_BUSY on a read-to-write upgrade; `busy_timeout` makes the others wait their turn.
Reads use a connection per thread, so a listing never waits for the writer lock.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from roadie.backends.base import (
    SCHEMA,
    Migration,
    Runner,
    SQLBackend,
    Transaction,
    inserted_job,
    load_migrations,
    load_queries,
    row_to_job,
)
from roadie.clock import Clock
from roadie.errors import DatabaseUnavailable, SchemaMissing
from roadie.jobs import Job, NewJob

QUERIES = load_queries(__name__)
BUSY_TIMEOUT_MS = 10_000
BULK_ROWS = 1000  # jobs per statement of a bulk insert: 10,000 bound values, under the limit
WAKE_POLL_SECONDS = 0.005


@functools.lru_cache(maxsize=4096)
def _from_unix(seconds: float) -> datetime:
    """Cached, since the rows of one claim share their start and lease times, and the jobs of
    one batch their creation time: a cache hit costs a fifth of building the datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# Strict like PostgreSQL's json type: NaN and Infinity, which roadie never writes, are not JSON.
_DECODER = json.JSONDecoder(parse_constant=_not_json)


class SQLiteBackend(SQLBackend):
    dialect = "sqlite"

    def __init__(self, path: str, clock: Clock, synchronous: str = "full") -> None:
        self.path = path
        # FULL: a commit is on disk when it returns. NORMAL (opt-in, `?synchronous=normal`):
        # WAL commits survive any crash of a process, but the last ones before a checkpoint
        # may be lost if the machine loses power; no fsync per commit.
        self.synchronous = synchronous.upper()
        self.clock = clock
        self._writer: sqlite3.Connection | None = None
        self._writer_lock = threading.RLock()
        self._lock_fd: int | None = None  # see _between_processes
        self._lock_depth = 0
        self._lock_pid = 0
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    # -- the dialect's forms -----------------------------------------------------------------

    def _now(self) -> float | None:
        now = self.clock.now()
        return None if now is None else now.timestamp()

    def _encode_time(self, value: datetime) -> float:
        return value.timestamp()

    def _to_time(self, value: Any) -> datetime | None:
        """Stored unix seconds, or an ISO string from an attempt record, as an aware datetime."""
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return _from_unix(value)

    def _from_json(self, value: Any) -> Any:
        return _DECODER.decode(value)

    def _job(self, row: sqlite3.Row) -> Job:
        # sqlite3.Row finds a column by comparing names one by one: a dict reads a wide row
        # several times faster, and a job row is read for every job claimed or inserted.
        return row_to_job(dict(zip(row.keys(), row, strict=True)), self._to_time, self._from_json)

    def _id_list(self, ids: list[int]) -> str:
        return json.dumps(ids)

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
            _use_wal(conn)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from None
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _thread_connection(self, purpose: str) -> sqlite3.Connection:
        """This thread's own connection for `purpose` (reading, transactions, watching)."""
        conn = getattr(self._local, purpose, None)
        if conn is None:
            conn = self._connect()
            setattr(self._local, purpose, conn)
        return conn

    def _runner(self, conn: sqlite3.Connection) -> Runner:
        def run(name: str, **params: Any) -> sqlite3.Cursor:
            return self._execute(conn, name, self._params(params))

        return run

    def _execute(
        self, conn: sqlite3.Connection, name: str, params: Any, sql: str | None = None
    ) -> sqlite3.Cursor:
        try:
            return conn.execute(QUERIES[name] if sql is None else sql, params)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise SchemaMissing() from None
            raise DatabaseUnavailable(f"SQLite {name} failed: {exc}") from None

    def _insert_bulk(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Rows as bound values, not one JSON text to take apart (about 40 % faster), in
        statements of at most BULK_ROWS jobs within one transaction."""
        now = self._now() or time.time()
        ids: list[int] = []
        with self._write_transaction() as conn:
            for start in range(0, len(jobs), BULK_ROWS):
                chunk = jobs[start : start + BULK_ROWS]
                values: list[Any] = []
                for job in chunk:
                    run_at = job.run_at.timestamp() if job.run_at else now + job.delay
                    values += (job.queue, job.task, job.args_json, job.priority, job.max_attempts,
                               now, run_at, run_at > now, job.timeout, job.parent_id)  # fmt: skip
                rows = self._execute(conn, "job_insert_bulk", values, _bulk_sql(len(chunk)))
                ids += sorted(row[0] for row in rows)  # RETURNING's order is not promised
        created_at = datetime.fromtimestamp(now, UTC)
        return [
            inserted_job(job, job_id, created_at, self._run_at(job, now, created_at))
            for job_id, job in zip(ids, jobs, strict=True)
        ]

    @staticmethod
    def _run_at(job: NewJob, now: float, created_at: datetime) -> datetime:
        if job.run_at is not None:
            return job.run_at.astimezone(UTC)
        return datetime.fromtimestamp(now + job.delay, UTC) if job.delay else created_at

    @contextmanager
    def _reading(self) -> Iterator[Runner]:
        yield self._runner(self._thread_connection("reader"))

    @contextmanager
    def _writing(self) -> Iterator[Runner]:
        with self._write_transaction() as conn:
            yield self._runner(conn)

    _atomic = _writing  # every write here is a `BEGIN IMMEDIATE` transaction already

    def _run_in(self, tx: Transaction, name: str, params: dict[str, Any]) -> sqlite3.Cursor:
        return self._execute(tx.connection, name, params)

    @contextmanager
    def _between_processes(self) -> Iterator[None]:
        """Take turns with roadie's other processes on this file before `BEGIN IMMEDIATE`.

        SQLite's own wait for the write lock sleeps 1, 2, 5 ... 100 ms between tries, so with
        several busy processes one can lose every race for seconds (a heartbeat too, and its
        leases lapse). An exclusive `flock` on `<file>-roadie.lock` wakes the next process as
        soon as the lock is free. Other programs writing the file still meet `busy_timeout`.
        """
        if self._lock_fd is None or self._lock_pid != os.getpid():  # a forked child opens its own
            self._lock_pid = os.getpid()
            try:
                self._lock_fd = os.open(f"{self.path}-roadie.lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                self._lock_fd = -1  # a folder we may not write in: SQLite's own waiting only
        if self._lock_fd < 0 or self._lock_depth:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """The process's writer connection inside `BEGIN IMMEDIATE ... COMMIT`."""
        with self._writer_lock, self._between_processes():
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

    def close(self) -> None:
        with self._writer_lock:
            if self._lock_fd is not None and self._lock_fd >= 0:
                os.close(self._lock_fd)
            self._lock_fd = None
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
        with self._write_transaction() as conn:
            return _applied(conn)

    def migration_apply(self, migration: Migration) -> bool:
        """Apply one migration unless applied; the write lock makes racing processes take turns."""
        with self._write_transaction() as conn:
            if migration.version in _applied(conn):
                return False
            for statement in _split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO roadie_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            return True

    def schema_columns(self) -> dict[str, tuple[str, ...]]:
        conn = self._thread_connection("reader")
        return {
            table: tuple(row["name"] for row in conn.execute(f"PRAGMA table_info({table})"))
            for table in SCHEMA
        }

    # -- transactions and wake-ups -----------------------------------------------------------

    def transaction_begin(self) -> Transaction:
        """A write transaction on a connection of its own, for a task's effects and completion."""
        conn = self._thread_connection("tx")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(f"SQLite write lock unavailable: {exc}") from None

        def finish(statement: str) -> None:
            try:
                if conn.in_transaction:
                    conn.execute(statement)
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise DatabaseUnavailable(f"SQLite {statement} failed: {exc}") from None

        return Transaction(
            connection=conn, commit=lambda: finish("COMMIT"), rollback=lambda: finish("ROLLBACK")
        )

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> bool:
        """Wait until another connection commits (PRAGMA data_version moves), or the timeout."""
        conn = self._thread_connection("watch")
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


@functools.lru_cache(maxsize=64)
def _bulk_sql(rows: int) -> str:
    """`job_insert_bulk` for `rows` jobs."""
    return QUERIES["job_insert_bulk"].replace(
        "{rows}", ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    )


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a new database file to WAL (kept in the file). Switching needs the file to itself
    and ignores busy_timeout, so connections racing to open a new file wait their turn here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _applied(conn: sqlite3.Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS roadie_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    return {row[0] for row in conn.execute("SELECT version FROM roadie_migrations")}


def _split_statements(script: str) -> list[str]:
    """A migration's statements, split where sqlite3 says a statement is complete."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
