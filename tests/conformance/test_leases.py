"""Leases and fencing on both backends, with a frozen clock: no sleeping.

A worker owns a job through (id, attempt, locked_by). Once its lease is gone, every write it
makes late (complete, retry, fail, progress, heartbeat) changes nothing and says so.
"""

from __future__ import annotations

import threading

import psycopg
import pytest

from roadie import App, FrozenClock, Job
from roadie.jobs import Fence
from roadie.maintenance import Maintenance
from tests.helpers import run_together, wait_until


@pytest.fixture
def frozen_app(frozen_app: App) -> App:
    @frozen_app.task(queue="content")
    def transcode(ctx, n: int = 0) -> None: ...

    return frozen_app


def claim_one(app: App, worker: str = "w1", lease: float = 30.0):
    [job] = app.backend.job_claim(worker, "content", 1, lease)
    return job, Fence(job.id, job.attempt, worker)


def test_a_lease_is_not_reaped_before_it_expires(frozen_app: App, clock) -> None:
    frozen_app.tasks["transcode"].enqueue()
    job, _ = claim_one(frozen_app)
    clock.advance(29.9)
    assert Maintenance(frozen_app.backend).run_once()["reaped"] == []
    assert frozen_app.get_job(job.id).state == "running"


def test_an_expired_lease_returns_the_job_with_the_attempt_counted(frozen_app: App, clock) -> None:
    frozen_app.tasks["transcode"].enqueue()
    job, _ = claim_one(frozen_app)
    clock.advance(30.1)
    [reaped] = Maintenance(frozen_app.backend).run_once()["reaped"]
    assert reaped.id == job.id
    after = frozen_app.get_job(job.id)
    assert (after.state, after.attempt, after.error, after.locked_by) == (
        "pending",
        1,
        "worker lost",
        None,
    )
    assert after.attempts[-1]["outcome"] == "lost" and after.attempts[-1]["worker"] == "w1"
    again, _ = claim_one(frozen_app, "w2")
    assert again.attempt == 2


def test_three_lost_workers_fail_the_job(frozen_app: App, clock) -> None:
    frozen_app.tasks["transcode"].enqueue()
    for n in range(3):
        job, _ = claim_one(frozen_app, f"w{n}")
        clock.advance(31)
        Maintenance(frozen_app.backend).run_once()
    after = frozen_app.get_job(job.id)
    assert (after.state, after.failure, after.attempt) == ("failed", "lost", 3)
    assert after.needs_review
    assert [a["outcome"] for a in after.attempts] == ["lost", "lost", "lost"]


def test_heartbeat_renews_a_lease(frozen_app: App, clock) -> None:
    frozen_app.tasks["transcode"].enqueue()
    job, fence = claim_one(frozen_app)
    clock.advance(20)
    assert frozen_app.backend.lease_renew("w1", [fence], 30.0) == {(job.id, 1)}
    clock.advance(20)
    assert Maintenance(frozen_app.backend).run_once()["reaped"] == []
    assert frozen_app.backend.job_complete(fence, "null")


def test_late_writes_after_a_lost_lease_change_nothing(frozen_app: App, clock) -> None:
    frozen_app.tasks["transcode"].enqueue()
    job, zombie = claim_one(frozen_app, "zombie")
    clock.advance(31)
    Maintenance(frozen_app.backend).run_once()
    _, owner = claim_one(frozen_app, "owner")
    before = frozen_app.get_job(job.id)
    backend = frozen_app.backend
    assert backend.job_complete(zombie, '"late"') is False
    assert backend.job_retry(zombie, 0, "retry", "late", None) is False
    assert backend.job_fail(zombie, "permanent", "failed", "late", None) is False
    assert backend.job_progress(zombie, '{"fraction": 1, "message": "late"}') is False
    assert backend.lease_renew("zombie", [zombie], 30.0) == set()
    assert frozen_app.get_job(job.id) == before
    # the same worker id with an old attempt number is fenced too
    assert backend.job_complete(Fence(job.id, 1, "owner"), '"stale attempt"') is False
    assert backend.job_complete(owner, '"mine"')
    after = frozen_app.get_job(job.id)
    assert (after.state, after.result, after.attempt) == ("complete", "mine", 2)
    assert backend.job_complete(owner, '"twice"') is False
    assert frozen_app.get_job(job.id).result == "mine"


def test_concurrent_reapers_take_each_job_once(frozen_app: App, clock, db_url) -> None:
    frozen_app.tasks["transcode"].enqueue_many([{"n": i} for i in range(200)])
    claimed = frozen_app.backend.job_claim("dead", "content", 200, 30.0)
    assert len(claimed) == 200
    clock.advance(31)
    apps = [App(db_url, clock=clock) for _ in range(3)]
    results = run_together(lambda app: len(Maintenance(app.backend).run_once()["reaped"]), apps)
    for app in apps:
        app.close()
    assert sum(results) == 200
    jobs = frozen_app.admin.list_jobs(limit=1000)
    assert all(len(j.attempts) == 1 and j.state == "pending" for j in jobs)


def test_a_worker_counts_lease_lost_and_discards_its_result(frozen_app: App, clock) -> None:
    """The handler outlives its lease (reaped mid-run): its completion is refused, counted."""
    from roadie.worker import Worker

    app = frozen_app

    @app.task(queue="analytics")
    def slow(ctx) -> str:
        clock.advance(31)
        Maintenance(app.backend).run_once()  # another worker's reaper takes the job back
        return "too late"

    job = slow.enqueue()
    worker = Worker(app.backend, app.tasks, ["analytics"], burst=True)
    claimed = app.backend.job_claim(worker.id, "analytics", 1, 30.0)
    worker._hold(claimed)
    worker._start_buffered()
    wait_until(lambda: not worker._inflight)
    assert worker.lease_lost == 1
    after = app.get_job(job.id)
    assert (after.state, after.result, after.attempt) == ("pending", None, 1)
    assert after.attempts[-1]["outcome"] == "lost"


def test_jobs_lost_before_come_one_per_claim_and_only_when_asked(frozen_app: App, clock) -> None:
    """A job that was running when its worker was lost may be what killed it: claims take it
    only as their one `suspect`, so it cannot take other suspects down with it again."""
    backend, transcode = frozen_app.backend, frozen_app.tasks["transcode"]
    lost_ids = [job.id for job in transcode.enqueue_many([{"n": i} for i in range(3)])]
    assert len(backend.job_claim("doomed", "content", 3, 30.0)) == 3
    clock.advance(31)
    assert len(Maintenance(backend).run_once()["reaped"]) == 3
    fresh_ids = [job.id for job in transcode.enqueue_many([{"n": i} for i in range(3, 5)])]

    assert [j.id for j in backend.job_claim("w1", "content", 10, 30.0, suspects=0)] == fresh_ids
    first = backend.job_claim("w2", "content", 10, 30.0, suspects=1)
    second = backend.job_claim("w3", "content", 10, 30.0)  # one suspect by default
    assert [(j.id, j.attempt) for j in first + second] == [(lost_ids[0], 2), (lost_ids[1], 2)]
    assert all(j.attempts[-1]["outcome"] == "lost" for j in first + second)
    # the limit counts the suspect too: a claim of 1 takes one job, a suspect and a fresh one due
    transcode.enqueue_many([{"n": 9}])
    assert len(backend.job_claim("w4", "content", 1, 30.0)) == 1


def test_the_reaper_skips_a_row_another_session_holds_on_postgres(pg_url: str) -> None:
    """A worker cut off in the middle of a completion transaction leaves its session holding that
    job's row until the server notices it is gone. The reaper must take every other expired job
    meanwhile, not wait on that row: waiting stalled each worker's reaper in turn."""
    clock = FrozenClock()
    with App(pg_url, clock=clock) as app:

        @app.task(queue="content")
        def transcode(ctx, n: int = 0) -> None: ...

        transcode.enqueue_many([{"n": i} for i in range(3)])
        held, *others = sorted(
            app.backend.job_claim("cut-off", "content", 3, 30.0), key=lambda j: j.id
        )
        clock.advance(31)
        with psycopg.connect(pg_url) as zombie:  # a transaction open, as if its COMMIT was lost
            zombie.execute("SELECT 1 FROM roadie_jobs WHERE id = %s FOR UPDATE", (held.id,))
            reaped: list[Job] = []
            reaper = threading.Thread(
                target=lambda: reaped.extend(Maintenance(app.backend).reap()), daemon=True
            )
            reaper.start()
            reaper.join(10)
            blocked = reaper.is_alive()
            zombie.rollback()  # lets a blocked reaper go on, so the test ends either way
            reaper.join(10)
        assert not blocked, "the reaper waited on the locked row"
        assert sorted(job.id for job in reaped) == [job.id for job in others]
        assert [job.id for job in Maintenance(app.backend).reap()] == [held.id]
