"""Parents, children and callbacks for the tree process tests, run by real workers (`roadie worker
--app tests.processes.tree_workload:app`).

The database comes from ROADIE_DATABASE_URL, set by the test. Handlers record each start in
`executions` (autocommit, see `workload.executed`); a callback, whose `ctx.job` is its parent,
records each of its runs in `callback_runs` (autocommit) and its effect in `child_effects` (one
row per child, primary key) through `ctx.transaction()`: it commits with the callback's fenced
completion, or never.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from roadie import App
from tests.processes.workload import _executions_connection, executed

LEASE = "2s"
HANG_SECONDS = 60.0  # far past any test's deadline: the test kills the worker before


def build(url: str | None = None) -> App:
    """The app with the tree tasks; the tests build one to enqueue."""
    app = App(url, lease=LEASE)

    @app.task(max_attempts=5)
    def leaf(ctx: Any, seconds: float = 0.0, tick: float = 0.0, hang_callback: bool = False) -> int:
        """A child: records its start, sleeps a little (to the next `tick`, if given, so that the
        children in flight end together). `hang_callback` is for its parent's callback to read."""
        executed(ctx, app.database_url)
        time.sleep(seconds)
        sleep_to_tick(tick)
        return ctx.job.id

    @app.task(max_attempts=5)
    def spawn_then_hang(ctx: Any, count: int) -> int:
        """Spawns `count` children, records its start, then (attempt 1 only) hangs until killed."""
        for index in range(count):
            ctx.spawn(leaf, seconds=index / 1000)
        executed(ctx, app.database_url)
        if ctx.job.attempt == 1:
            hang()
        return count

    @app.task(max_attempts=5)
    def fan_out(ctx: Any, count: int, tick: float = 0.0, hang_first: bool = False) -> int:
        """Spawns `count` children; its callback hangs on its first run for the first, if asked."""
        for index in range(count):
            ctx.spawn(leaf, tick=tick, hang_callback=hang_first and index == 0)
        return count

    @fan_out.on_child_complete
    def fan_out_child_done(ctx: Any, child: Any) -> None:
        runs = callback_ran(app.database_url, child.id)
        if child.args.get("hang_callback") and runs == 1:
            hang()
        sleep_to_tick(child.args.get("tick", 0.0))
        with ctx.transaction() as conn:
            write(
                conn,
                "INSERT INTO child_effects (child_id, parent_id) VALUES (?, ?)",
                child.id,
                ctx.job.id,
            )

    @app.task(max_attempts=5)
    def fan_out_plain(ctx: Any, count: int, tick: float = 0.0) -> int:
        """Spawns `count` children and has no callback."""
        for _ in range(count):
            ctx.spawn(leaf, tick=tick)
        return count

    return app


def hang() -> None:
    """Block this job's thread (its worker's heartbeat goes on) until the process is killed."""
    deadline = time.monotonic() + HANG_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError("hung for a minute and nobody killed the worker")


def sleep_to_tick(tick: float) -> None:
    """Sleep to the next multiple of `tick` seconds of the wall clock, which every worker process
    on this machine shares: the jobs in flight on all of them end at the same instant."""
    if tick:
        time.sleep(tick - time.time() % tick)


def callback_ran(url: str, child_id: int) -> int:
    """Record a run of the callback for `child_id`, for good (autocommit); how many so far."""
    conn = _executions_connection(url)
    write(conn, "INSERT INTO callback_runs (child_id, pid) VALUES (?, ?)", child_id, os.getpid())
    return write(conn, "SELECT count(*) FROM callback_runs WHERE child_id = ?", child_id)[0][0]


def write(conn: Any, sql: str, *params: Any) -> list[Any]:
    """One statement on a sqlite3 or psycopg connection, with `?` placeholders."""
    if not isinstance(conn, sqlite3.Connection):
        sql = sql.replace("?", "%s")
    cursor = conn.execute(sql, params)
    return list(cursor.fetchall()) if cursor.description else []


app = build()
