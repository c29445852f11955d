"""The distributed engine: PostgreSQL through psycopg 3 and a connection pool.

Claims use `FOR UPDATE SKIP LOCKED`, so workers on many servers never wait on each other's rows;
a trigger sends `NOTIFY roadie_jobs` with the queue's name when due jobs arrive, so idle workers
start them at once (polling remains the fallback). Connections run in autocommit: each operation
is one statement and one round trip.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
from roadie.errors import DatabaseUnavailable, InvalidInput, SchemaMissing
from roadie.jobs import Fence, Job, NewJob

QUERIES = load_queries(__name__)
CONNECT_TIMEOUT_SECONDS = 5
MIGRATION_LOCK_KEY = 0x726F616469650001  # "roadie" + 1: one advisory lock for all migrations
CONNECTION_OPTIONS = {"application_name": "roadie", "options": "-c timezone=UTC"}
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


def to_time(value: Any) -> datetime | None:
    """A timestamptz, or an ISO string from an attempt record, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC)


def _job(row: Any) -> Job:
    return row_to_job(row, to_time, _decoded)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str, clock: Clock, pool_size: int = 10) -> None:
        try:
            conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise InvalidInput(f"malformed database URL {url!r}: {exc}") from None
        self.url = url
        self.clock = clock
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            open=False,
            timeout=CONNECT_TIMEOUT_SECONDS,
            check=ConnectionPool.check_connection,
            kwargs={"autocommit": True, "row_factory": dict_row, **CONNECTION_OPTIONS},
            name="roadie",
        )
        self._opened = False
        self._open_lock = threading.Lock()
        self._listener: psycopg.Connection | None = None

    # -- connections -------------------------------------------------------------------------

    def _connect(self, **kwargs: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(
                self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS, **CONNECTION_OPTIONS, **kwargs
            )
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {reason}") from None

    def _open(self) -> ConnectionPool:
        """Open the pool on first use, after one direct connection that explains any failure."""
        if not self._opened:
            with self._open_lock:
                if not self._opened:
                    self._connect().close()
                    self._pool.open(wait=False)
                    self._opened = True
        return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        try:
            with self._open().connection() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {_reason(exc)}") from None
        except psycopg.errors.UndefinedTable:
            raise SchemaMissing() from None

    def _params(self, **params: Any) -> dict[str, Any]:
        return {"now": self.clock.now(), **params}

    def _rows(self, name: str, **params: Any) -> list[dict[str, Any]]:
        with self._connection() as conn:
            cursor = conn.execute(QUERIES[name], self._params(**params))
            return cursor.fetchall() if cursor.description else []

    def _changed(self, name: str, **params: Any) -> bool:
        with self._connection() as conn:
            return conn.execute(QUERIES[name], self._params(**params)).rowcount == 1

    def close(self) -> None:
        if self._opened:
            self._pool.close()
            self._opened = False
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- migrations --------------------------------------------------------------------------

    def migrations(self) -> list[Migration]:
        return load_migrations(__name__)

    def migration_versions(self) -> set[int]:
        with self._connection() as conn, conn.transaction():
            return _applied(conn)

    def migration_apply(self, migration: Migration) -> bool:
        """Apply one migration unless applied; an advisory lock makes racing processes take turns."""
        with self._connection() as conn, conn.transaction():
            if migration.version in _applied(conn):
                return False
            conn.execute(migration.sql.encode())  # several statements: the simple query protocol
            conn.execute(
                "INSERT INTO roadie_migrations (version, name, applied_at) VALUES (%s, %s, now())",
                (migration.version, migration.name),
            )
            return True

    def schema_columns(self) -> dict[str, tuple[str, ...]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ANY(%s)"
                " ORDER BY table_name, ordinal_position",
                (list(SCHEMA),),
            ).fetchall()
        columns: dict[str, tuple[str, ...]] = {table: () for table in SCHEMA}
        for row in rows:
            columns[row["table_name"]] += (row["column_name"],)
        return columns

    # -- jobs --------------------------------------------------------------------------------

    def job_insert(self, jobs: Sequence[NewJob]) -> list[Job]:
        batch = encode_batch(jobs, lambda t: t.isoformat())
        rows = self._rows("job_insert", jobs=batch)
        inserted = [_job(row) for row in rows]

        def existing(key: str) -> Job | None:
            found = self._rows("job_get_by_idempotency_key", key=key)
            return _job(found[0]) if found else None

        return order_inserted(jobs, inserted, existing)

    def job_get(self, job_id: int) -> Job | None:
        rows = self._rows("job_get", id=job_id)
        return _job(rows[0]) if rows else None

    def job_list(self, query: JobQuery) -> list[Job]:
        rows = self._rows(
            "job_list", state=query.state, queue=query.queue, task=query.task, limit=query.limit
        )
        return [_job(row) for row in rows]

    def job_claim(self, worker_id: str, queue: str, limit: int, lease: float) -> list[Job]:
        rows = self._rows("job_claim", worker_id=worker_id, queue=queue, limit=limit, lease=lease)
        return sorted((_job(row) for row in rows), key=lambda j: (-j.priority, j.id))

    def job_complete(self, fence: Fence, result_json: str, tx: Transaction | None = None) -> bool:
        params = self._params(**_fence(fence), result=result_json)
        if tx is None:
            return self._changed("job_complete", **params)
        try:
            return tx.connection.execute(QUERIES["job_complete"], params).rowcount == 1
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {_reason(exc)}") from None

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
        return [_job(row) for row in self._rows("job_list_timed_out")]

    # -- leases ------------------------------------------------------------------------------

    def lease_renew(
        self, worker_id: str, fences: Sequence[Fence], lease: float
    ) -> set[tuple[int, int]]:
        if not fences:
            return set()
        ids = [fence.job_id for fence in fences]
        rows = self._rows("lease_renew", worker_id=worker_id, ids=ids, lease=lease)
        return {(row["id"], row["attempt"]) for row in rows}

    def lease_reap(self, max_lost: int) -> list[Job]:
        return [_job(row) for row in self._rows("lease_reap", max_lost=max_lost)]

    # -- workers -----------------------------------------------------------------------------

    def worker_heartbeat(self, info: WorkerInfo) -> None:
        self._rows(
            "worker_heartbeat",
            id=info.id,
            host=info.host,
            pid=info.pid,
            queues=json.dumps(info.queues),
            concurrency=info.concurrency,
        )

    def worker_stop(self, worker_id: str) -> None:
        self._rows("worker_stop", id=worker_id)

    def worker_list(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                queues=row["queues"],
                concurrency=row["concurrency"],
                started_at=to_time(row["started_at"]),
                heartbeat_at=to_time(row["heartbeat_at"]),
                stopped_at=to_time(row["stopped_at"]),
            )
            for row in self._rows("worker_list")
        ]

    # -- transactions and wake-ups -----------------------------------------------------------

    def transaction_begin(self) -> Transaction:
        """A pooled connection in a transaction of its own, for a task's effects and completion."""
        pool = self._open()
        try:
            conn = pool.getconn()
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {_reason(exc)}") from None
        conn.autocommit = False

        def finish(action: str) -> None:
            try:
                getattr(conn, action)()
            except UNAVAILABLE as exc:
                raise DatabaseUnavailable(f"PostgreSQL unavailable: {_reason(exc)}") from None
            finally:
                if not conn.closed:
                    conn.autocommit = True
                pool.putconn(conn)

        return Transaction(
            connection=conn, commit=lambda: finish("commit"), rollback=lambda: finish("rollback")
        )

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until NOTIFY says a due job arrived in one of `queues`, or the timeout."""
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self._connect(autocommit=True)
                self._listener.execute("LISTEN roadie_jobs")
            for notice in self._listener.notifies(timeout=timeout, stop_after=64):
                if notice.payload in queues:
                    return True
        except UNAVAILABLE as exc:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {_reason(exc)}") from None
        return False


def _decoded(value: Any) -> Any:
    """psycopg has already decoded json and jsonb columns."""
    return value


def _applied(conn: psycopg.Connection) -> set[int]:
    """Applied versions, under the migration lock held to the end of the caller's transaction."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS roadie_migrations"
        " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
    )
    return {row["version"] for row in conn.execute("SELECT version FROM roadie_migrations")}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fence(fence: Fence) -> dict[str, Any]:
    return {"id": fence.job_id, "attempt": fence.attempt, "worker_id": fence.worker_id}
