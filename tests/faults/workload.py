"""The tasks the fault suite runs in real workers: `roadie worker --app tests.faults.workload:app`.

The database comes from ROADIE_DATABASE_URL and the lease from ROADIE_FAULTS_LEASE (default 2s),
both set by the harness (`tests/faults/harness.py`). The tables the tasks write are created by
`FaultDatabase.create_tables()`:

- `executions(job_id, attempt, pid)`: every start of an attempt, written at once on a connection
  of its own (autocommit), so it survives a crash. Not unique: a duplicate holder shows (I6).
- `effects(job_id PRIMARY KEY, attempt)`: the job's effect, written through `ctx.transaction()`,
  so it commits with the fenced completion or never (I2).
- `callbacks(parent_id, child_id, child_state)`: one row per `on_child_complete` delivery,
  through the callback's completion transaction. Not unique: a second delivery would show.
- `completions(parent_id, callbacks_seen)`: one row per `on_complete` run that committed, with how
  many callbacks had committed for that parent then (all of them, or the parent ended early).

Crash points a job's arguments choose (`crash`), on the attempts listed in `crash_on` (default
the first only, so the retry succeeds):
- `"before_effect"`: SIGKILL itself after recording its start, before writing the effect;
- `"after_effect"`: SIGKILL itself after writing the effect in the (uncommitted) completion
  transaction. The commit edges themselves are the engine's failpoints (roadie/failpoints.py).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import threading
import time
from typing import Any

import psycopg

from roadie import App, Permanent, Task

LEASE = os.environ.get("ROADIE_FAULTS_LEASE", "2s")
MAX_ATTEMPTS = 10
_local = threading.local()


def build(url: str | None = None, lease: str | None = None) -> App:
    """The app with the fault workload's tasks; the tests build one on their database to enqueue."""
    app = App(url, lease=lease or LEASE)

    @app.task(max_attempts=MAX_ATTEMPTS)
    def work(
        ctx: Any,
        ms: float = 0.0,
        ms_max: float | None = None,
        crash: str | None = None,
        crash_on: list[int] | None = None,
    ) -> int:
        """Record the start, sleep `ms` (or a random time in [ms, ms_max]), write the effect with
        the completion; crash at the chosen point on the chosen attempts."""
        executed(app.database_url, ctx.job.id, ctx.job.attempt)
        crashing = crash is not None and ctx.job.attempt in (crash_on or [1])
        if crashing and crash == "before_effect":
            die()
        seconds = (random.uniform(ms, ms_max) if ms_max is not None else ms) / 1000
        if seconds:
            time.sleep(seconds)
        effect(ctx)
        if crashing and crash == "after_effect":
            die()
        return ctx.job.id

    @app.task(max_attempts=MAX_ATTEMPTS)
    def long_job(ctx: Any, seconds: float) -> int:
        """Run `seconds` in short sleeps (the heartbeat thread runs meanwhile); stop early if the
        job's context says it was cancelled (lease lost), without writing the effect."""
        executed(app.database_url, ctx.job.id, ctx.job.attempt)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if ctx.cancelled:
                raise RuntimeError("cancelled: lease lost")
            time.sleep(0.05)
        effect(ctx)
        return ctx.job.attempt

    @app.task(max_attempts=MAX_ATTEMPTS)
    def gil_hog(ctx: Any, seconds: float, hog_on: list[int] | None = None) -> dict[str, Any]:
        """On the attempts in `hog_on` (default the first), hold the GIL in one C call for about
        `seconds` (`sum(range(n))`: a builtin looping in C never offers the GIL to other
        threads), so no other thread of this process, the heartbeat included, runs meanwhile.
        Writes the effect after it. Returns how long the call took and a heartbeat count."""
        executed(app.database_url, ctx.job.id, ctx.job.attempt)
        held = 0.0
        if ctx.job.attempt in (hog_on or [1]):
            held = hold_gil(seconds)
        effect(ctx)
        return {"attempt": ctx.job.attempt, "held": held}

    @app.task(max_attempts=MAX_ATTEMPTS)
    def poison(ctx: Any) -> None:
        """A poison job: every attempt kills the process running it."""
        executed(app.database_url, ctx.job.id, ctx.job.attempt)
        die()

    @app.task(max_attempts=MAX_ATTEMPTS)
    def child(ctx: Any, ms: float = 0.0, ms_max: float | None = None, fail: bool = False) -> int:
        """A child of `tree`: records its start, sleeps, writes its effect; `fail` fails it for
        good (Permanent, no effect)."""
        executed(app.database_url, ctx.job.id, ctx.job.attempt)
        seconds = (random.uniform(ms, ms_max) if ms_max is not None else ms) / 1000
        if seconds:
            time.sleep(seconds)
        if fail:
            raise Permanent("this child fails for good")
        effect(ctx)
        return ctx.job.id

    @app.task(max_attempts=MAX_ATTEMPTS)
    def tree(
        ctx: Any, children: int, ms: float = 0.0, ms_max: float | None = None, fail: int = 0
    ) -> int:
        """A parent spawning `children` children (the first `fail` of them fail permanently);
        its effect commits with its handler's completion, with the children."""
        executed(app.database_url, ctx.job.id, ctx.job.attempt)
        for index in range(children):
            ctx.spawn(child, ms=ms, ms_max=ms_max, fail=index < fail)
        effect(ctx)
        return children

    @tree.on_child_complete
    def tree_child_done(ctx: Any, ended: Any) -> None:
        """One `callbacks` row per delivery, committed with the callback's completion; a failed
        child fails the parent (Permanent: the failed-child policy under test)."""
        executed(app.database_url, ctx.own_job.id, ctx.own_job.attempt)
        if ended.state == "failed":
            raise Permanent(f"child {ended.id} failed")
        with ctx.transaction() as conn:
            write(
                conn,
                "INSERT INTO callbacks (parent_id, child_id, child_state) VALUES (?, ?, ?)",
                ctx.job.id,
                ended.id,
                ended.state,
            )

    @tree.on_complete
    def tree_done(ctx: Any) -> None:
        """The parent's completion: one `completions` row, with the callbacks committed by now."""
        executed(app.database_url, ctx.own_job.id, ctx.own_job.attempt)
        with ctx.transaction() as conn:
            row = write(
                conn, "SELECT count(*) AS n FROM callbacks WHERE parent_id = ?", ctx.job.id
            )[0]
            seen = row[0] if isinstance(row, tuple) else row["n"]  # roadie's rows may be dicts
            write(
                conn,
                "INSERT INTO completions (parent_id, callbacks_seen) VALUES (?, ?)",
                ctx.job.id,
                seen,
            )

    return app


def die() -> None:
    """SIGKILL this process: no cleanup, no rollback message, like a crash or the OOM killer."""
    os.kill(os.getpid(), signal.SIGKILL)


def hold_gil(seconds: float) -> float:
    """Hold the GIL for about `seconds` in C calls that never release it; the time it took.

    `sum(range(n))` runs entirely inside one builtin; CPython switches threads only between
    bytecodes, so no other thread runs until it returns. The rate is measured first on a
    small `n` (also holding the GIL) and the long call sized from it; a hash over a small buffer
    adds nothing (hashlib releases the GIL only for data over 2 KB)."""
    probe = 2_000_000
    started = time.perf_counter()
    sum(range(probe))
    rate = probe / max(time.perf_counter() - started, 1e-6)
    n = int(rate * seconds)
    started = time.perf_counter()
    sum(range(n))
    hashlib.sha256(b"x").digest()
    return time.perf_counter() - started


def executed(url: str, job_id: int, attempt: int) -> None:
    """Record that this attempt started, at once and for good (autocommit)."""
    conn = _executions_connection(url)
    write(
        conn,
        "INSERT INTO executions (job_id, attempt, pid) VALUES (?, ?, ?)",
        job_id,
        attempt,
        os.getpid(),
    )


def effect(ctx: Any) -> None:
    """The job's effect, written in its completion transaction: it commits exactly once."""
    with ctx.transaction() as conn:
        write(
            conn, "INSERT INTO effects (job_id, attempt) VALUES (?, ?)", ctx.job.id, ctx.job.attempt
        )


def write(conn: Any, sql: str, *params: Any) -> list[Any]:
    """One statement on a sqlite3 or psycopg connection, with `?` placeholders."""
    if not isinstance(conn, sqlite3.Connection):
        sql = sql.replace("?", "%s")
    cursor = conn.execute(sql, params)
    return list(cursor.fetchall()) if cursor.description else []


def _executions_connection(url: str) -> Any:
    """One autocommit connection per job thread, opened again if it was closed or broke."""
    conn = getattr(_local, "conn", None)
    if conn is not None and not (isinstance(conn, psycopg.Connection) and conn.closed):
        return conn
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
    else:
        conn = psycopg.connect(url, autocommit=True, application_name="roadie-faults-workload")
    _local.conn = conn
    return conn


def enqueue_loop(url: str, seconds: float, per_second: float) -> None:
    """Open an App, enqueue one `work` job, close it, `per_second` times a second for `seconds`
    s: a process reconnecting all the time (F20). Prints each committed job's id, and each
    error as `ERROR <text>` (the test requires none), one line each, flushed at once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.monotonic()
        try:
            with build(url) as fresh:
                job = fresh.tasks["work"].enqueue(ms=10, ms_max=40)
            print(job.id, flush=True)
        except Exception as exc:  # reported, not raised: the test counts them
            print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        time.sleep(max(0.0, 1 / per_second - (time.monotonic() - began)))


app = build()


class Feeder:
    """Enqueues `rate` jobs of `task` per second (a batch every 0.1 s, catching up if late)
    until stopped; keeps their ids (F18's steady load, L3's and L5's)."""

    def __init__(self, task: Task, rate: int, args: dict[str, Any] | None = None) -> None:
        self.task = task
        self.args = args or {}
        self.per_batch = max(1, rate // 10)
        self.ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            jobs = self.task.enqueue_many([self.args] * self.per_batch)
            self.ids += [job.id for job in jobs]
            next_at += 0.1
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(10)
        return self.ids
