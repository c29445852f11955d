"""The distributed engine: PostgreSQL through psycopg 3 and a connection pool.

Claims use `FOR UPDATE SKIP LOCKED`, so workers on many servers never wait on each other's rows;
a trigger sends `NOTIFY roadie_jobs` with the queue's name when due jobs arrive, so idle workers
start them at once (polling remains the fallback). Connections run in autocommit: each operation
is one statement and one round trip.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from roadie.backends.base import (
    SCHEMA,
    Migration,
    Runner,
    SQLBackend,
    Transaction,
    inserted_job,
    load_migrations,
    load_queries,
)
from roadie.clock import Clock
from roadie.config import shown
from roadie.errors import DatabaseUnavailable, InvalidInput, SchemaMissing
from roadie.jobs import Job, NewJob

# Statements only this dialect needs: COPY returns no ids, so a bulk insert takes them first.
POSTGRES_ONLY = frozenset({"job_reserve_ids"})
QUERIES = load_queries(__name__, own=POSTGRES_ONLY)
CONNECT_TIMEOUT_SECONDS = 5
# job_insert_bulk's columns. The arguments are already JSON text: sent as text, the server
# reads them as json (and checks them); psycopg's json type would encode the text again.
BULK_COLUMN_TYPES = [  # id, queue, task, args, priority, max_attempts, then:
    *("int8", "text", "text", "text", "int4", "int4"),
    *("timestamptz", "timestamptz", "bool"),  # created_at, run_at, scheduled
    *("float8", "int8"),  # timeout, parent_id
]
LISTENER_REFRESH_SECONDS = 1.0  # see wait_for_jobs
MIGRATION_LOCK_KEY = 0x726F616469650001  # "roadie" + 1: one advisory lock for all migrations
# A peer cut off without a reset (a network partition) is noticed within ~25 s on both ends of
# every connection: TCP keepalives after 10 s of silence, 3 probes 5 s apart, and data unacked
# for 25 s (tcp_user_timeout). The server then ends a cut-off worker's session, and with it any
# transaction it held open and the row locks it held; the client stops waiting on a server that
# is gone. (Unix sockets ignore them.)
KEEPALIVES = {"idle": 10, "interval": 5, "count": 3}
USER_TIMEOUT_MS = 25_000
CONNECTION_OPTIONS = {
    "application_name": "roadie",
    "options": " ".join(
        [
            "-c timezone=UTC",
            *(f"-c tcp_keepalives_{name}={value}" for name, value in KEEPALIVES.items()),
            f"-c tcp_user_timeout={USER_TIMEOUT_MS}",
        ]
    ),
    "keepalives": 1,
    **{f"keepalives_{name}": value for name, value in KEEPALIVES.items()},
    "tcp_user_timeout": USER_TIMEOUT_MS,
}
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


class PostgresBackend(SQLBackend):
    dialect = "postgresql"

    def __init__(self, url: str, clock: Clock, pool_size: int = 10) -> None:
        check_url(url)
        self.url = url
        self.clock = clock
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            open=False,
            timeout=CONNECT_TIMEOUT_SECONDS,
            check=self._check_connection,
            kwargs={"autocommit": True, "row_factory": dict_row, **CONNECTION_OPTIONS},
            name="roadie",
        )
        self._opened = False
        self._open_lock = threading.Lock()
        self._listener: psycopg.Connection | None = None
        self._listener_refreshed = 0.0

    # -- the dialect's forms (psycopg decodes json and timestamptz itself) --------------------

    def _now(self) -> datetime | None:
        return self.clock.now()

    def _encode_time(self, value: datetime) -> str:
        return value.isoformat()

    def _to_time(self, value: Any) -> datetime | None:
        """A timestamptz, or an ISO string from an attempt record, as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(UTC)

    # -- connections -------------------------------------------------------------------------

    def _connect(self, **kwargs: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(
                self.url, connect_timeout=CONNECT_TIMEOUT_SECONDS, **CONNECTION_OPTIONS, **kwargs
            )
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {_reason(exc)}") from None

    def _check_connection(self, conn: psycopg.Connection) -> None:
        """The pool's check of a connection it hands out, without a round trip when it can:
        an idle connection has nothing to read, and a server that ends one (restart,
        `pg_terminate_backend`) sends an error and closes it, which makes its socket readable.
        Only then is it pinged; one that fails is closed, so the pool replaces it rather than
        handing it out again after a backoff. One dead connection usually means they all died:
        drop every idle one at once, not one per step of the pool's backoff (1 s, 2 s, 4 s...),
        which outlasts its 5 s timeout when several died together."""
        if not _has_input(conn):
            return
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            conn.close()
            self._pool.check()
            raise

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

    @contextmanager
    def _reading(self) -> Iterator[Runner]:
        with self._connection() as conn:
            yield lambda name, **params: conn.execute(QUERIES[name], self._params(params))

    _writing = _reading  # autocommit: every statement is its own short transaction

    @contextmanager
    def _atomic(self) -> Iterator[Runner]:
        with self._connection() as conn, conn.transaction():
            yield lambda name, **params: conn.execute(QUERIES[name], self._params(params))

    def _completion_batch(self, items: list[tuple[int, int, str, Any, float]]) -> dict[str, Any]:
        """The ids, and a jsonb object of the rest keyed by "id:attempt", which each row looks
        up: no join for the planner to get wrong (see job_complete_many.sql). Sent as jsonb, so
        the server parses it once, not once per row."""
        entries = {
            f"{job_id}:{attempt}": [result, finished_at, held]
            for job_id, attempt, result, finished_at, held in items
        }
        return {"ids": [item[0] for item in items], "batch": Jsonb(entries)}

    def _insert_bulk(self, jobs: Sequence[NewJob]) -> list[Job]:
        """COPY, with ids and the time taken first: about twice the rate of one INSERT of the
        batch. One COPY is one statement, so the batch still goes in whole or not at all."""
        with self._connection() as conn:
            reserved = conn.execute(
                QUERIES["job_reserve_ids"], {"count": len(jobs), "now": self._now()}
            ).fetchall()
            now = reserved[0]["now"].astimezone(UTC)
            ids = [row["id"] for row in reserved]
            run_ats = [_run_at(job, now) for job in jobs]
            with conn.cursor().copy(QUERIES["job_insert_bulk"]) as copy:
                copy.set_types(BULK_COLUMN_TYPES)
                for job_id, job, run_at in zip(ids, jobs, run_ats, strict=True):
                    copy.write_row(
                        (job_id, job.queue, job.task, job.args_json, job.priority,
                         job.max_attempts, now, run_at, run_at > now, job.timeout, job.parent_id)
                    )  # fmt: skip
        return [
            inserted_job(job, job_id, now, run_at)
            for job_id, job, run_at in zip(ids, jobs, run_ats, strict=True)
        ]

    def _run_in(self, tx: Transaction, name: str, params: dict[str, Any]) -> psycopg.Cursor:
        try:
            return tx.connection.execute(QUERIES[name], params)
        except UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {_reason(exc)}") from None

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
            connection=conn,
            commit=lambda: finish("commit"),
            rollback=lambda: finish("rollback"),
            lost=lambda: conn.closed,
        )

    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until NOTIFY says a due job arrived in one of `queues`, or the timeout.

        The listening server process reads each notification inside a brief transaction, and
        PostgreSQL stamps that transaction's start (`xact_start`) with the time of the
        connection's last statement: without one, every listener looks like a transaction open
        since its `LISTEN` to pg_stat_activity, to roadie's own old-snapshot alert and to any
        monitor. A trivial statement every second keeps that stamp fresh, and finds a dead
        listening connection that waiting alone would never notice."""
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self._connect(autocommit=True)
                self._listener.execute("LISTEN roadie_jobs")
                self._listener_refreshed = time.monotonic()
            elif time.monotonic() - self._listener_refreshed >= LISTENER_REFRESH_SECONDS:
                self._listener.execute("SELECT 1")
                self._listener_refreshed = time.monotonic()
            for notice in self._listener.notifies(timeout=timeout, stop_after=64):
                if notice.payload in queues:
                    return True
        except UNAVAILABLE as exc:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            raise DatabaseUnavailable(f"PostgreSQL unavailable: {_reason(exc)}") from None
        return False


def _has_input(conn: psycopg.Connection) -> bool:
    """Whether the server sent something to a connection no statement is waiting on."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):  # closed, or no socket left
        return True
    return bool(readable)


def _run_at(job: NewJob, now: datetime) -> datetime:
    """When a job inserted at `now` is due, as the one-statement insert computes it."""
    if job.run_at is not None:
        return job.run_at.astimezone(UTC)
    return now + timedelta(seconds=job.delay) if job.delay else now


def check_url(url: str) -> None:
    """Refuse a URL libpq cannot parse, before anything connects."""
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise InvalidInput(f"malformed database URL {shown(url)}: {_reason(exc)}") from None


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
