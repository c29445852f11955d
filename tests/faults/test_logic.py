"""Logic and contention faults of FAULTS.md (F10-F14, F16, F17), on both engines.

No process is killed here: these are the races and the rules that hold without a crash. Workers
run in-process (`Worker` threads; each contender its own `App`, hence its own connections), the
backend's claim and the admin actions are called directly where a whole worker is too coarse,
and retry arithmetic runs on a frozen database clock (`frozen_app`), so nothing sleeps on it.

Short forms take seconds; ROADIE_FAULTS=long (`make test-faults`) runs the FAULTS.md sizes
(F12 100k jobs, F13 200 running jobs, F14 10k leases) and prints the figures.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from roadie import App, Permanent, Transient
from roadie.jobs import Fence
from roadie.maintenance import Maintenance
from roadie.worker import Worker
from tests.helpers import wait_until

LONG = os.environ.get("ROADIE_FAULTS") == "long"


def outcomes(app: App, job_id: int) -> list[tuple[int, str]]:
    return [(a["attempt"], a["outcome"]) for a in app.get_job(job_id).attempts]


def report(line: str) -> None:
    """A measured figure, printed (pytest -s shows it; the long form's report collects it)."""
    print(f"[faults-logic] {line}")


# -- F10 retries on the database clock ---------------------------------------------------------


def test_f10_transient_three_times_then_success_at_attempt_4(frozen_app: App, clock) -> None:
    """F10: a job failing transiently 3 times completes at attempt 4; each gap before the next
    attempt is the default backoff (1 s x 2^(n-1)) within its ±20 % jitter, measured on the
    database clock, and no attempt runs a moment before its `run_at`."""
    runs: list[int] = []

    @frozen_app.task(queue="content", max_attempts=10)
    def flaky(ctx: Any) -> str:
        runs.append(ctx.job.attempt)
        if ctx.job.attempt <= 3:
            raise Transient(f"relay busy ({ctx.job.attempt})")
        return "sent"

    job = flaky.enqueue()
    gaps = []
    for attempt in (1, 2, 3):
        frozen_app.run_worker(burst=True)
        after = frozen_app.get_job(job.id)
        assert (after.state, after.attempt) == ("pending", attempt)
        gap = (after.run_at - clock.now()).total_seconds()
        gaps.append(gap)
        expected = 2 ** (attempt - 1)
        assert 0.8 * expected <= gap <= 1.2 * expected, (attempt, gap)
        clock.advance(gap - 0.01)
        frozen_app.run_worker(burst=True)  # 10 ms early: nothing runs
        assert frozen_app.get_job(job.id).attempt == attempt
        clock.advance(0.011)  # 1 ms late (the stored times are rounded to microseconds)
    frozen_app.run_worker(burst=True)
    done = frozen_app.get_job(job.id)
    assert (done.state, done.attempt, done.result, done.failure) == ("complete", 4, "sent", None)
    assert runs == [1, 2, 3, 4]
    assert outcomes(frozen_app, job.id) == [
        (1, "retry"),
        (2, "retry"),
        (3, "retry"),
        (4, "complete"),
    ]
    assert [a["error"] for a in done.attempts[:3]] == [f"relay busy ({n})" for n in (1, 2, 3)]
    report(f"F10 gaps {[round(g, 3) for g in gaps]} s (backoff 1, 2, 4 s ±20 %)")


def test_f10_permanent_fails_at_attempt_1(frozen_app: App) -> None:
    """F10: Permanent fails the job at once: attempt 1, no retry although 10 were allowed."""

    @frozen_app.task(queue="content", max_attempts=10)
    def corrupt(ctx: Any) -> None:
        raise Permanent("corrupt upload")

    job = corrupt.enqueue()
    for _ in range(3):
        frozen_app.run_worker(burst=True)
    after = frozen_app.get_job(job.id)
    assert (after.state, after.failure, after.attempt) == ("failed", "permanent", 1)
    assert outcomes(frozen_app, job.id) == [(1, "failed")]


def test_f10_exhausted_keeps_the_full_error_history(frozen_app: App, clock) -> None:
    """F10: past max_attempts the job fails `exhausted` keeping every attempt's error and
    traceback; an administrator's retry adds attempts after them, never over them."""

    @frozen_app.task(queue="content", max_attempts=3)
    def down(ctx: Any) -> None:
        raise TimeoutError(f"storage timed out on attempt {ctx.job.attempt}")

    job = down.enqueue()
    for _ in range(3):
        frozen_app.run_worker(burst=True)
        clock.advance(3600)
    failed = frozen_app.get_job(job.id)
    assert (failed.state, failed.failure, failed.attempt) == ("failed", "exhausted", 3)
    assert outcomes(frozen_app, job.id) == [(1, "retry"), (2, "retry"), (3, "failed")]
    for n, record in enumerate(failed.attempts, 1):
        assert record["error"] == f"TimeoutError: storage timed out on attempt {n}"
        assert "TimeoutError" in record["traceback"]
    frozen_app.admin.retry([job.id])
    frozen_app.run_worker(burst=True)
    again = frozen_app.get_job(job.id)
    assert again.attempt == 4 and [a["attempt"] for a in again.attempts] == [1, 2, 3, 4]
    assert again.attempts[:3] == failed.attempts


# -- F11 a long retry delay outlives many short leases -----------------------------------------


def test_f11_a_retry_delay_of_an_hour_is_kept_by_the_database_clock(frozen_app: App, clock) -> None:
    """F11 on a frozen clock: retried with `retry_in=1h` under a 2 s lease, the job is neither
    claimed nor reaped at 59:59, and is claimed (attempt 2) at 1 h."""

    @frozen_app.task(queue="content")
    def later(ctx: Any) -> None:
        if ctx.job.attempt == 1:
            raise Transient("come back later", retry_in="1h")

    job = later.enqueue()
    assert frozen_app.run_worker(burst=True, lease="2s") == 0
    for step in (2, 30, 600, 2967.999):  # 3599.999 s in all: many leases, still an hour early
        clock.advance(step)
        assert Maintenance(frozen_app.backend).run_once()["reaped"] == []
        assert frozen_app.backend.job_claim("early", "content", 10, 2.0) == []
    assert frozen_app.get_job(job.id).attempt == 1
    clock.advance(0.001)
    [claimed] = frozen_app.backend.job_claim("on-time", "content", 10, 2.0)
    assert (claimed.id, claimed.attempt) == (job.id, 2)


def test_f11_no_run_before_run_at_with_a_live_worker_and_short_leases(app: App) -> None:
    """F11 on the real clock: a worker with a 1 s lease and a busy reaper keeps reclaiming an
    abandoned job (proof it ran sweep after sweep) while the job retried for 1 h stays pending
    at attempt 1, its `run_at` untouched."""
    runs: list[int] = []

    @app.task(queue="content")
    def later(ctx: Any) -> None:
        runs.append(ctx.job.attempt)
        raise Transient("come back later", retry_in="1h")

    @app.task(queue="content")
    def canary(ctx: Any) -> str:
        return "ran"

    job = later.enqueue()
    abandoned = canary.enqueue_many([{} for _ in range(3)])
    held = app.backend.job_claim("dead-host:1:abc", "content", 10, 1.0)  # a worker that died
    assert {j.id for j in held} == {job.id, *(j.id for j in abandoned)}
    # the dead worker held `later` too: give it back as its first attempt, retried in 1 h
    assert app.backend.job_retry(Fence(job.id, 1, "dead-host:1:abc"), 3600, "retry", "x", None)
    run_at = app.get_job(job.id).run_at
    worker = Worker(
        app.backend, app.tasks, ["content"], lease=1.0, sweep_interval=0.2, poll_interval=0.05
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: all(app.get_job(j.id).state == "complete" for j in abandoned),
            30,
            "the reaper gave back the abandoned jobs and the worker ran them",
        )
        # a few more leases' worth of sweeps and claims
        more = canary.enqueue_many([{} for _ in range(3)])
        wait_until(lambda: all(app.get_job(j.id).state == "complete" for j in more), 30)
    finally:
        worker.stop()
        thread.join(10)
    after = app.get_job(job.id)
    assert (after.state, after.attempt, after.run_at) == ("pending", 1, run_at)
    assert runs == []  # never started by the live worker
