"""The fault workload for the tests that take the database away: `--app tests.faults.dbworkload:app`.

The same tasks as tests/faults/workload.py, with one difference: each task records its start on
a connection of its own, and when the server restarts (F5) or that connection is killed (F6),
the write raises `psycopg.OperationalError`, which roadie rightly treats as the task's own,
permanent failure (only ConnectionError, TimeoutError and Transient are retried by default). An
outage is not the job's fault, and the start must be recorded, so here the recording reconnects
and tries again (for up to a minute). A retry inserts only if this very process has not recorded
this attempt already (the first try may have committed before its connection died), so a second
holder of the same attempt still shows as a duplicate (I6).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import psycopg

from roadie import App
from tests.faults import workload

RETRY_FOR = 60.0
_first_try = workload.executed


def executed(url: str, job_id: int, attempt: int) -> None:
    """Record this attempt's start, riding out a database restart or a killed connection."""
    try:
        _first_try(url, job_id, attempt)
        return
    except psycopg.OperationalError:
        pass
    deadline = time.monotonic() + RETRY_FOR
    while True:
        _drop_connection()
        try:
            conn = workload._executions_connection(url)
            workload.write(
                conn,
                "INSERT INTO executions (job_id, attempt, pid) SELECT ?, ?, ? WHERE NOT EXISTS"
                " (SELECT 1 FROM executions WHERE job_id = ? AND attempt = ? AND pid = ?)",
                *(job_id, attempt, os.getpid()) * 2,
            )
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(f"cannot record the start: {exc}") from None  # transient
            time.sleep(0.1)


def _drop_connection() -> None:
    conn = getattr(workload._local, "conn", None)
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
    workload._local.conn = None


workload.executed = executed  # the tasks look `executed` up in workload's namespace per call
APP = "tests.faults.dbworkload:app"
GATE_LIMIT = 60.0


def build(url: str | None = None) -> App:
    """The harness workload's app plus `gated`; the tests build one on their database."""
    app = workload.build(url)

    @app.task(max_attempts=workload.MAX_ATTEMPTS)
    def gated(ctx: Any, gate: str) -> int:
        """Write the effect in the completion transaction, then (first attempt only) wait until
        the file `gate` exists before returning: the test breaks the database meanwhile, so the
        completion meets a lost transaction."""
        executed(app.database_url, ctx.job.id, ctx.job.attempt)
        workload.effect(ctx)
        Path(f"{gate}.{ctx.job.attempt}.waiting").touch()
        deadline = time.monotonic() + GATE_LIMIT
        while ctx.job.attempt == 1 and not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.02)
        return ctx.job.attempt

    return app


app = build()
