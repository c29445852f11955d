"""Issue 4's administrative actions against real `roadie worker` processes, on both engines:
expire-stuck on a worker stopped with SIGSTOP, clear-locks after a SIGKILL, pause/resume.

The actions go through `Admin` (what the CLI calls). A worker that must keep a job without its
lease running out gets `--lease 60s` (heartbeat every 20 s) and `--concurrency 1 --sweep-interval
60s`, so it is stopped inside its handler, which touches the database only at its start and
its end; `stop_between_transactions` makes sure it holds no lock the test's writes would wait on.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from roadie import App
from roadie.admin import Admin
from roadie.jobs import Job
from tests.processes import workload
from tests.processes.helpers import (
    Database,
    WorkerProcess,
    stop_between_transactions,
    wait_until,
)

HOLDER = ("--lease", "60s", "--concurrency", "1", "--sweep-interval", "60s")
SWEEP = ("--sweep-interval", "0.5s")


@pytest.fixture
def tasks(db_url: str) -> Iterator[App]:
    """The workload's app with the admin tests' tasks, to enqueue with and to administer."""
    with workload.build(db_url) as app:
        yield workload.add_admin_tasks(app)


def job_of(admin: Admin, job_id: int) -> Job:
    return admin.get_job(job_id)


def pid_of(worker_id: str | None) -> int | None:
    """The pid in a worker id (host:pid:random)."""
    return int(worker_id.split(":")[1]) if worker_id else None


def holder_pid(job: Job) -> int | None:
    return pid_of(job.locked_by)


def final_row(job: Job) -> tuple[Any, ...]:
    """What a late write must not change."""
    return (
        job.state,
        job.attempt,
        job.result,
        job.error,
        job.failure,
        job.finished_at,
        job.locked_by,
        job.attempts,
    )


def outcomes(job: Job) -> list[tuple[int, str]]:
    return [(a["attempt"], a["outcome"]) for a in job.attempts]


def running_on(admin: Admin, job_id: int, worker: WorkerProcess) -> Job | None:
    job = job_of(admin, job_id)
    return job if job.state == "running" and holder_pid(job) == worker.pid else None


def refused(worker: WorkerProcess, job_id: int, attempt: int) -> bool:
    return f"job {job_id} attempt {attempt}: lease lost (LeaseLost), result discarded" in (
        worker.log()
    )


@pytest.mark.parametrize("fail", [False, True], ids=["retry", "fail"])
def test_expire_stuck_takes_a_job_from_a_stopped_worker_whose_late_completion_is_refused(
    db: Database,
    tasks: App,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    fail: bool,
) -> None:
    admin = tasks.admin
    gate = tmp_path / "gate"
    job = tasks.tasks["hold"].enqueue(gate=str(gate))
    stopped = start_worker(*HOLDER)
    wait_until(lambda: db.rows("SELECT pid FROM executions") == [(stopped.pid,)], 15, "job started")
    stop_between_transactions(stopped, db)
    held = job_of(admin, job.id)
    assert (held.state, held.attempt, holder_pid(held)) == ("running", 1, stopped.pid)

    assert admin.expire_stuck("1h") == [], "running for less than an hour"
    assert admin.expire_stuck("0s", queue="elsewhere") == [], "another queue"
    assert [j.id for j in admin.expire_stuck("0s", dry_run=True)] == [job.id]
    assert final_row(job_of(admin, job.id)) == final_row(held), "a dry run changes nothing"

    expired = admin.expire_stuck("0s", fail=fail, actor="ops")

    assert [(j.id, j.attempt, j.locked_by) for j in expired] == [(job.id, 1, held.locked_by)]
    [entry] = admin.audit(action="admin.expire-stuck", actor="ops", limit=1)
    assert (entry.job_ids, entry.count, entry.params["fail"]) == ([job.id], 1, fail)
    after = job_of(admin, job.id)
    assert after.locked_by is None
    [first] = after.attempts
    assert (first["attempt"], first["outcome"], first["worker"]) == (1, "expired", held.locked_by)
    assert first["error"].startswith("expired by ops")
    if fail:
        assert (after.state, after.failure, after.attempt) == ("failed", "expired", 1)
        assert after.needs_review
    else:
        assert (after.state, after.attempt) == ("pending", 1)
        other = start_worker(*SWEEP)
        wait_until(
            lambda: job_of(admin, job.id).state == "complete", 15, "job complete on another worker"
        )
        after = job_of(admin, job.id)
        assert after.attempt == 2, "a new attempt, never a reset"
        assert after.result == {"pid": other.pid, "attempt": 2}
        assert outcomes(after) == [(1, "expired"), (2, "complete")]
        assert db.rows("SELECT attempt, pid FROM executions ORDER BY attempt") == [
            (1, stopped.pid),
            (2, other.pid),
        ]

    gate.touch()  # the stopped worker's handler ends as soon as it runs again
    stopped.signal(signal.SIGCONT)
    wait_until(
        lambda: refused(stopped, job.id, 1),
        15,
        "the stopped worker's late completion refused",
        detail=stopped.log,
    )

    assert final_row(job_of(admin, job.id)) == final_row(after), "the late write changed nothing"
    effects = db.rows("SELECT job_id, attempt FROM effects")
    assert effects == ([] if fail else [(job.id, 2)]), "its effects rolled back with it"
    assert stopped.alive()
    stopped.signal(signal.SIGTERM)
    assert stopped.wait(15) == 0


def test_clear_locks_releases_the_jobs_of_a_killed_worker_only(
    db: Database,
    tasks: App,
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    admin = tasks.admin
    hold = tasks.tasks["hold"]
    lost = hold.enqueue(gate=str(tmp_path / "never"))
    doomed = start_worker(*HOLDER)
    wait_until(lambda: running_on(admin, lost.id, doomed), 15, "the doomed worker's job running")
    kept_gate = tmp_path / "kept"
    kept = hold.enqueue(gate=str(kept_gate))
    # It renews every 1.3 s, well inside --dead-for 3s; its reaper acts on run-out leases only.
    bystander = start_worker("--lease", "4s", "--concurrency", "2", *SWEEP)
    wait_until(lambda: running_on(admin, kept.id, bystander), 15, "the bystander's job running")

    doomed.signal(signal.SIGKILL)
    assert doomed.wait(5) == -signal.SIGKILL

    def states() -> dict[int, tuple[str | None, int]]:
        return {w.pid: (w.state, w.jobs) for w in admin.workers(dead_after="3s")}

    wait_until(
        lambda: states().get(doomed.pid, ("", 0))[0] == "dead",
        15,
        "the killed worker silent for 3 s",
        detail=states,
    )
    assert states() == {doomed.pid: ("dead", 1), bystander.pid: ("alive", 1)}
    assert [j.id for j in admin.clear_locks(dead_for="3s", dry_run=True)] == [lost.id]
    assert job_of(admin, lost.id).state == "running", "a dry run changes nothing"

    released = admin.clear_locks(dead_for="3s")

    assert [(j.id, j.state, j.locked_by) for j in released] == [(lost.id, "pending", None)]
    [record] = released[0].attempts
    assert (record["attempt"], record["outcome"], record["error"]) == (1, "lost", "worker lost")
    assert pid_of(record["worker"]) == doomed.pid
    [entry] = admin.audit(action="admin.clear-locks", limit=1)
    assert (entry.job_ids, entry.count) == ([lost.id], 1)
    wait_until(lambda: job_of(admin, lost.id).state == "complete", 15, "the released job rerun")
    done = job_of(admin, lost.id)
    assert done.result == {"pid": bystander.pid, "attempt": 2}
    assert outcomes(done) == [(1, "lost"), (2, "complete")]
    assert states()[doomed.pid] == ("dead", 0)

    still = job_of(admin, kept.id)
    assert (still.state, still.attempt, holder_pid(still)) == ("running", 1, bystander.pid)
    kept_gate.touch()
    wait_until(lambda: job_of(admin, kept.id).state == "complete", 15, "the kept job complete")
    assert job_of(admin, kept.id).result == {"pid": bystander.pid, "attempt": 1}, (
        "its lock was never taken away"
    )
    assert sorted(db.rows("SELECT job_id, attempt FROM effects")) == [(lost.id, 2), (kept.id, 1)]


def test_a_running_worker_claims_nothing_from_a_paused_queue_until_it_is_resumed(
    db: Database, tasks: App, start_worker: Callable[..., WorkerProcess]
) -> None:
    admin = tasks.admin
    record = tasks.tasks["record"]
    worker = start_worker("--queues", "pause-open,pause-held", "--concurrency", "2", *SWEEP)
    wait_until(lambda: [w.pid for w in admin.workers()] == [worker.pid], 15, "worker up")
    admin.pause("pause-held")
    resumed = False
    try:
        # The paused queue's jobs come first: a worker ignoring the pause would take them first.
        held = record.options(queue="pause-held").enqueue_many([{} for _ in range(4)])
        served = record.options(queue="pause-open").enqueue_many([{} for _ in range(4)])

        wait_until(
            lambda: all(job_of(admin, j.id).state == "complete" for j in served),
            15,
            "the open queue's jobs complete",
        )
        for job in held:
            left = job_of(admin, job.id)
            assert (left.state, left.attempt, left.started_at) == ("pending", 0, None)
        ran = {job_id for (job_id,) in db.rows("SELECT job_id FROM executions")}
        assert ran == {j.id for j in served}
        assert {q["queue"]: q["paused"] for q in admin.queues()}["pause-held"] is True

        admin.resume("pause-held")
        resumed = True
    finally:
        if not resumed:  # the queue table outlives the test on PostgreSQL
            admin.resume("pause-held")

    wait_until(
        lambda: all(job_of(admin, j.id).state == "complete" for j in held),
        5,
        "the resumed queue's jobs complete promptly",
    )
    assert {q["queue"]: q["paused"] for q in admin.queues()}["pause-held"] is False
    assert worker.alive()
    actions = [e.action for e in admin.audit(limit=2) if e.params.get("queue") == "pause-held"]
    assert actions == ["queues.resume", "queues.pause"]
