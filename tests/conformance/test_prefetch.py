"""Claiming ahead (`prefetch`): jobs claimed beyond the free slots are held under lease in the
worker's hands until a slot frees; on both backends."""

from __future__ import annotations

import threading

from roadie import App
from roadie.maintenance import Maintenance
from roadie.worker import Worker
from tests.helpers import wait_until


def running(app: App) -> list:
    return [job for job in app.admin.list_jobs(limit=1000) if job.state == "running"]


def test_held_jobs_never_exceed_the_buffer_are_renewed_and_released_on_a_graceful_stop(
    app: App,
) -> None:
    gate = threading.Event()

    @app.task(queue="content")
    def block(ctx, n: int) -> int:
        gate.wait(10)
        return n

    jobs = block.enqueue_many([{"n": i} for i in range(10)])
    worker = Worker(
        app.backend,
        app.tasks,
        ["content"],
        concurrency=1,
        prefetch=2,
        lease=0.9,
        poll_interval=0.05,
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_until(lambda: len(running(app)) == 3, what="one running and two held")
    for _ in range(8):  # past the lease: the heartbeat renews the held jobs too
        threading.Event().wait(0.2)
        assert len(running(app)) == 3 and len(worker._buffer) == 2 and worker._running == 1
    assert Maintenance(app.backend).run_once()["reaped"] == []
    held = [ex.job.id for ex in worker._buffer]
    worker.stop()
    wait_until(lambda: not worker._buffer, what="held jobs released")
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    states = {job.id: app.get_job(job.id) for job in jobs}
    for job_id in held:  # back to the queue, as a job released at shutdown
        after = states[job_id]
        assert (after.state, after.locked_by) == ("pending", None)
        assert [a["outcome"] for a in after.attempts] == ["retry"]
        assert "before the job started" in after.attempts[0]["error"]
    assert sum(job.state == "complete" for job in states.values()) == 1
    assert sum(job.state == "pending" for job in states.values()) == 9
    assert worker.lease_lost == 0


def test_held_jobs_of_a_worker_that_stops_renewing_are_reaped_and_never_started(
    frozen_app: App, clock
) -> None:
    app = frozen_app
    gate = threading.Event()
    started: list[int] = []

    @app.task(queue="content")
    def block(ctx, n: int) -> int:
        started.append(n)
        gate.wait(10)
        return n

    block.enqueue_many([{"n": i} for i in range(5)])
    worker = Worker(app.backend, app.tasks, ["content"], concurrency=1, prefetch=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_until(lambda: len(running(app)) == 3 and started, what="one running and two held")
    clock.advance(31)  # no renewal within the lease (the heartbeat runs every 10 s)
    reaped = Maintenance(app.backend).run_once()["reaped"]
    assert len(reaped) == 3
    for job in reaped:
        after = app.get_job(job.id)
        assert (after.state, after.locked_by) == ("pending", None)
        assert [a["outcome"] for a in after.attempts] == ["lost"]
    worker.stop()
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    assert started == [0]  # the held jobs never ran here
    assert worker.lease_lost == 3  # the running job's result and both releases were refused
    assert all(app.get_job(job.id).state == "pending" for job in reaped)


def test_burst_mode_drains_held_jobs_before_exiting(app: App) -> None:
    @app.task(queue="content")
    def noop(ctx, n: int) -> None: ...

    @app.task(queue="content")
    async def anoop(ctx, n: int) -> str:
        return "async"

    @app.task(queue="video")
    def other(ctx, n: int) -> str:
        return "video"

    noop.enqueue_many([{"n": i} for i in range(200)])
    anoop.enqueue_many([{"n": i} for i in range(50)])
    other.enqueue_many([{"n": i} for i in range(50)])
    worker = Worker(
        app.backend, app.tasks, ["content", "video"], concurrency=2, prefetch=8, burst=True
    )
    hold = worker._hold
    most = 0

    def watched_hold(jobs: list) -> None:  # on the claim loop, the only thread adding jobs
        nonlocal most
        most = max(most, len(jobs) + len(worker._buffer) + worker._running)
        hold(jobs)

    worker._hold = watched_hold  # type: ignore[method-assign]
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    jobs = app.admin.list_jobs(limit=1000)
    assert len(jobs) == 300
    assert all(j.state == "complete" and len(j.attempts) == 1 for j in jobs)
    assert {j.result for j in jobs} == {"async", "video", None}
    assert worker.processed == 300 and worker.lease_lost == 0
    assert 2 < most <= 2 + 8  # never more held than the free slots and the buffer


def test_a_held_job_past_its_self_fence_is_given_up_not_started(app: App) -> None:
    from roadie.errors import DatabaseUnavailable

    gate = threading.Event()
    started: list[int] = []

    @app.task(queue="content")
    def block(ctx, n: int) -> int:
        started.append(n)
        gate.wait(10)
        return n

    block.enqueue_many([{"n": i} for i in range(3)])
    worker = Worker(
        app.backend,
        app.tasks,
        ["content"],
        concurrency=1,
        prefetch=2,
        lease=0.6,
        poll_interval=0.05,
    )
    renew = app.backend.lease_renew
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_until(lambda: len(worker._buffer) == 2 and started, what="one running and two held")

    def away(*args: object) -> object:
        raise DatabaseUnavailable("away")

    app.backend.lease_renew = away  # type: ignore[method-assign]
    wait_until(lambda: all(ex.settled for ex in worker._buffer), what="held jobs given up")
    app.backend.lease_renew = renew  # type: ignore[method-assign]
    gate.set()
    wait_until(lambda: not worker._buffer and not worker._inflight, what="nothing in hand")
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert started == [0]
