"""The tasks the process tests run in real workers: `roadie worker --app tests.processes.workload:app`.

The database comes from ROADIE_DATABASE_URL, set by the test. Every task records each start in
`executions` (autocommit, on a connection of its own: it survives a crash) and its effect in
`effects` through `ctx.transaction()` (it commits with the job's fenced completion, or never).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from typing import Any

import psycopg

from roadie import App

LEASE = "2s"
_local = threading.local()


def build(url: str | None = None) -> App:
    """The app with the workload's tasks; the tests build one to enqueue."""
    app = App(url, lease=LEASE)

    @app.task(max_attempts=5)
    def record(ctx: Any, seconds: float = 0.0, slow_first: float = 0.0) -> int:
        """Sleep (longer on the first attempt, if asked), then record the effect."""
        executed(ctx, app.database_url)
        time.sleep(slow_first if ctx.job.attempt == 1 and slow_first else seconds)
        effect(ctx)
        return ctx.job.id

    @app.task(max_attempts=10)
    def suicide(ctx: Any) -> None:
        """A poison job: it kills the process running it."""
        executed(ctx, app.database_url)
        os.kill(os.getpid(), signal.SIGKILL)

    return app


def executed(ctx: Any, url: str) -> None:
    """Record that this attempt started, at once and for good (autocommit)."""
    conn = _executions_connection(url)
    row = (ctx.job.id, ctx.job.attempt, os.getpid())
    if isinstance(conn, sqlite3.Connection):
        conn.execute("INSERT INTO executions (job_id, attempt, pid) VALUES (?, ?, ?)", row)
    else:
        conn.execute("INSERT INTO executions (job_id, attempt, pid) VALUES (%s, %s, %s)", row)


def effect(ctx: Any) -> None:
    """The job's effect, written in its completion transaction: it commits exactly once."""
    with ctx.transaction() as conn:
        row = (ctx.job.id, ctx.job.attempt)
        if isinstance(conn, sqlite3.Connection):
            conn.execute("INSERT INTO effects (job_id, attempt) VALUES (?, ?)", row)
        else:
            conn.execute("INSERT INTO effects (job_id, attempt) VALUES (%s, %s)", row)


def _executions_connection(url: str) -> Any:
    """One autocommit connection per job thread, opened again if it was closed."""
    conn = getattr(_local, "conn", None)
    if conn is not None and not (isinstance(conn, psycopg.Connection) and conn.closed):
        return conn
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
    else:
        conn = psycopg.connect(url, autocommit=True)
    _local.conn = conn
    return conn


app = build()


HOLD_LIMIT = 60.0  # a held attempt gives up (fails) after this long, so no test hangs on it


def add_admin_tasks(app: App) -> App:
    """The tasks of the admin process tests (test_admin_processes.py), added to `app`."""

    @app.task(max_attempts=5)
    def hold(ctx: Any, gate: str, held: int = 1) -> dict[str, int]:
        """Attempts up to `held` block until the file `gate` exists; later ones run through.
        Records its start and effect as `record` does; returns who ran it."""
        executed(ctx, app.database_url)
        deadline = time.monotonic() + HOLD_LIMIT
        while ctx.job.attempt <= held and not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.02)
        effect(ctx)
        return {"pid": os.getpid(), "attempt": ctx.job.attempt}

    return app


add_admin_tasks(app)
