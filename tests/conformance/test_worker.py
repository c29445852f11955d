"""The worker in-process on both backends: timeouts, cancellation, fair sharing, stopping."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from roadie import App, FrozenClock
from roadie.context import JobContext
from roadie.maintenance import Maintenance
from roadie.worker import Worker
from roadie.worker.execution import Execution
from tests.helpers import wait_until


def start_worker(app: App, queues: list[str], **options) -> tuple[Worker, threading.Thread]:
    worker = Worker(app.backend, app.tasks, queues, **options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


def test_a_sync_task_past_its_timeout_is_expired_and_retried(app: App) -> None:
    release = threading.Event()
    seen_cancelled = []

    @app.task(queue="content", timeout="200ms", max_attempts=2)
    def transcode(ctx) -> str:
        if ctx.job.attempt == 1:
            while not ctx.cancelled:
                time.sleep(0.01)
            seen_cancelled.append(True)
            release.wait(5)
            return "late"
        return "done"

    job = transcode.enqueue()
    worker, thread = start_worker(app, ["content"], poll_interval=0.05)
    wait_until(lambda: app.get_job(job.id).attempts)
    first = app.get_job(job.id).attempts[0]
    assert first["outcome"] == "expired" and first["error"] == "timed out after 0.2s"
    release.set()
    wait_until(lambda: app.get_job(job.id).state == "complete")
    worker.stop()
    thread.join(10)
    after = app.get_job(job.id)
    assert seen_cancelled == [True]
    assert (after.result, after.attempt) == ("done", 2)


def test_an_async_task_past_its_timeout_is_cancelled_and_fails_when_out_of_attempts(
    app: App,
) -> None:
    cancelled = []

    @app.task(queue="content", timeout="100ms", max_attempts=1)
    async def hang(ctx) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    job = hang.enqueue()
    app.run_worker(burst=True, poll_interval="20ms")
    after = app.get_job(job.id)
    assert (after.state, after.failure, after.attempt) == ("failed", "expired", 1)
    assert after.attempts[0]["outcome"] == "expired"
    assert cancelled == [True]


def test_the_maintenance_expirer_ends_jobs_whose_worker_forgot_them(make_app) -> None:
    clock = FrozenClock()
    app = make_app(clock=clock)

    @app.task(queue="content", timeout="1m", max_attempts=1)
    def transcode(ctx) -> None: ...

    job = transcode.enqueue()
    app.backend.job_claim("w1", "content", 1, 600.0)
    clock.advance(59)
    assert Maintenance(app.backend).run_once()["expired"] == []
    clock.advance(2)
    assert [j.id for j in Maintenance(app.backend).run_once()["expired"]] == [job.id]
    after = app.get_job(job.id)
    assert (after.state, after.failure) == ("failed", "expired")


def test_a_spike_in_one_queue_does_not_starve_another(app: App) -> None:
    started: list[str] = []
    gate = threading.Event()

    @app.task(queue="analytics")
    def crunch(ctx) -> None:
        started.append("analytics")
        gate.wait(5)

    @app.task(queue="notifications")
    def notify(ctx) -> None:
        started.append("notifications")

    crunch.enqueue_many([{} for _ in range(200)])
    worker, thread = start_worker(
        app, ["analytics", "notifications"], concurrency=4, poll_interval=0.02
    )
    wait_until(lambda: len(started) >= 4)
    assert started.count("analytics") == 4  # the spike fills the worker ...
    notify.enqueue()
    gate.set()  # ... but as slots free up, the other queue gets its share at once
    wait_until(lambda: "notifications" in started)
    assert started.index("notifications") < 4 + 8
    worker.stop()
    thread.join(10)


def test_stop_lets_in_flight_jobs_finish_and_claims_no_more(app: App) -> None:
    running = threading.Event()
    finish = threading.Event()

    @app.task(queue="segmentation")
    def segment(ctx, n: int) -> int:
        running.set()
        finish.wait(5)
        return n

    jobs = segment.enqueue_many([{"n": i} for i in range(5)])
    worker, thread = start_worker(app, ["segmentation"], concurrency=2, grace=10.0)
    running.wait(5)
    worker.stop()
    finish.set()
    thread.join(10)
    states = [app.get_job(j.id).state for j in jobs]
    assert states.count("complete") == 2 and states.count("pending") == 3
    [me] = [w for w in app.admin.workers() if w.id == worker.id]
    assert me.stopped_at is not None


def test_stop_releases_jobs_that_outlive_the_grace_period(app: App) -> None:
    running = threading.Event()

    @app.task(queue="segmentation")
    def stuck(ctx) -> None:
        running.set()
        while not ctx.cancelled:
            time.sleep(0.01)

    job = stuck.enqueue()
    worker, thread = start_worker(app, ["segmentation"], grace=0.2)
    running.wait(5)
    worker.stop()
    thread.join(10)
    after = app.get_job(job.id)
    assert (after.state, after.attempt) == ("pending", 1)
    assert after.attempts[0]["outcome"] == "retry" and "released" in after.attempts[0]["error"]


def test_an_idle_worker_picks_up_a_new_job_quickly(app: App) -> None:
    @app.task(queue="notifications")
    def ping(ctx) -> None: ...

    worker, thread = start_worker(app, ["notifications"], poll_interval=1.0)
    wait_until(lambda: app.admin.workers())
    job = ping.enqueue()
    wait_until(lambda: app.get_job(job.id).state == "complete", timeout=5)
    after = app.get_job(job.id)
    assert (after.started_at - after.created_at).total_seconds() < 1.0
    worker.stop()
    thread.join(10)


def test_progress_and_cancelled_from_the_context(app: App) -> None:
    seen = {}

    @app.task(queue="content")
    def probe(ctx) -> None:
        ctx.progress(0.25, "probing")
        seen["job"] = (ctx.job.id, ctx.job.attempt, ctx.job.queue)
        seen["cancelled"] = ctx.cancelled
        seen["running"] = app.get_job(ctx.job.id).progress

    job = probe.enqueue()
    app.run_worker(burst=True)
    assert seen == {
        "job": (job.id, 1, "content"),
        "cancelled": False,
        "running": {"fraction": 0.25, "message": "probing"},
    }


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half", True])
def test_progress_refuses_bad_fractions(app: App, bad) -> None:
    @app.task(queue="content")
    def probe(ctx) -> None:
        ctx.progress(bad)

    job = probe.enqueue()
    app.run_worker(burst=True)
    after = app.get_job(job.id)
    assert after.state == "failed" and "bad progress" in after.error and after.progress is None


def test_workers_register_with_a_heartbeat(app: App) -> None:
    @app.task(queue="indexing")
    def index(ctx) -> None: ...

    worker, thread = start_worker(app, ["indexing"], concurrency=3)
    wait_until(lambda: any(w.id == worker.id for w in app.admin.workers()))
    [me] = [w for w in app.admin.workers() if w.id == worker.id]
    assert (me.queues, me.concurrency, me.stopped_at) == (["indexing"], 3, None)
    assert me.heartbeat_at is not None
    worker.stop()
    thread.join(10)


def test_jobs_leave_no_reference_cycles_and_the_collector_is_restored(app: App) -> None:
    """A job's objects (its Execution, context, snapshot, locks) are freed when it ends, by
    reference counting alone: the worker collects young objects rarely (GC_YOUNG_THRESHOLD),
    so a cycle per job would pile up between collections. Run with the collector off, then
    count what only a collection would free."""

    @app.task(queue="content")
    def thumbnail(ctx, size: int) -> int:
        return size

    thumbnail.enqueue_many([{"size": n} for n in range(200)])
    before = gc.get_threshold()
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        worker = Worker(app.backend, app.tasks, ["content"], burst=True)
        assert worker.run() == 0 and worker.processed == 200
        gc.collect()
        leaked = [obj for obj in gc.garbage if isinstance(obj, Execution | JobContext)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert leaked == []
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
