"""A job's life on both backends: enqueue, order, delays, idempotency, results, progress."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from roadie import App, FrozenClock, InvalidInput, Job
from roadie.backends.base import BULK_INSERT_MIN
from roadie.backends.postgres import QUERIES
from tests.helpers import run_together

JOB_KEYS = {
    "id", "queue", "task", "args", "priority", "state", "attempt", "max_attempts", "created_at",
    "run_at", "started_at", "finished_at", "result", "error", "failure", "progress", "parent_id",
    "locked_by", "lock_expires_at", "idempotency_key",
}  # fmt: skip


def test_enqueue_returns_a_pending_snapshot_with_every_field(app: App) -> None:
    @app.task(queue="content", priority=3, max_attempts=5)
    def publish(ctx, video_id: int) -> None: ...

    job = publish.enqueue(video_id=7)
    assert isinstance(job, Job)
    assert set(job.to_dict()) >= JOB_KEYS
    assert (job.queue, job.task, job.args, job.priority) == (
        "content",
        "publish",
        {"video_id": 7},
        3,
    )
    assert (job.state, job.attempt, job.max_attempts) == ("pending", 0, 5)
    assert job.created_at.tzinfo is not None and job.run_at >= job.created_at
    assert job.started_at is None and job.finished_at is None and job.locked_by is None
    assert not job.needs_review
    again = app.get_job(job.id)
    assert again.children == [] and again.child_counts == {}
    assert replace(again, children=None) == job
    assert app.get_job(job.id + 1000) is None


def test_a_job_runs_to_complete_with_its_json_result(app: App) -> None:
    @app.task(queue="content")
    def render(ctx, width: int, name: str) -> dict:
        ctx.progress(0.5, "halfway")
        return {"width": width * 2, "name": name, "big": 2**70, "list": [1.5, None, True]}

    job = render.enqueue(width=640, name="clip ✓")
    assert app.run_worker(burst=True) == 0
    done = app.get_job(job.id)
    assert done.state == "complete" and done.attempt == 1
    assert done.result == {"width": 1280, "name": "clip ✓", "big": 2**70, "list": [1.5, None, True]}
    assert done.progress == {"fraction": 0.5, "message": "halfway"}
    assert done.started_at is not None and done.finished_at >= done.started_at
    assert done.locked_by is None and done.lock_expires_at is None
    [record] = done.attempts
    assert record["outcome"] == "complete" and record["attempt"] == 1 and record["worker"]
    assert record["finished_at"] >= record["started_at"]


def test_async_tasks_run_on_the_event_loop(app: App) -> None:
    @app.task(queue="notifications")
    async def notify(ctx, user: int) -> int:
        import asyncio

        await asyncio.sleep(0.01)
        return user + 1

    jobs = notify.enqueue_many([{"user": i} for i in range(20)])
    app.run_worker(burst=True, concurrency=8)
    assert [app.get_job(j.id).result for j in jobs] == [i + 1 for i in range(20)]


def test_higher_priority_first_then_older_first(app: App) -> None:
    order: list[int] = []

    @app.task(queue="indexing")
    def step(ctx, n: int) -> None:
        order.append(n)

    step.enqueue(n=1)
    step.options(priority=5).enqueue(n=2)
    step.enqueue(n=3)
    step.options(priority=5).enqueue(n=4)
    step.options(priority=-1).enqueue(n=5)
    app.run_worker(burst=True, concurrency=1)
    assert order == [2, 4, 1, 3, 5]


def test_claim_takes_a_batch_in_order_under_a_lease(app: App) -> None:
    @app.task(queue="analytics")
    def rollup(ctx, day: int) -> None: ...

    jobs = rollup.enqueue_many([{"day": d} for d in range(5)])
    claimed = app.backend.job_claim("w1", "analytics", 3, 30.0)
    assert [j.id for j in claimed] == [j.id for j in jobs[:3]]
    for job in claimed:
        assert job.state == "running" and job.attempt == 1 and job.locked_by == "w1"
        assert job.lock_expires_at - job.started_at == timedelta(seconds=30)
    assert [j.id for j in app.backend.job_claim("w2", "analytics", 10, 30.0)] == [
        j.id for j in jobs[3:]
    ]
    assert app.backend.job_claim("w3", "analytics", 10, 30.0) == []


def test_delayed_jobs_wait_for_their_time(make_app) -> None:
    clock = FrozenClock()
    app = make_app(clock=clock)

    @app.task(queue="notifications")
    def remind(ctx) -> None: ...

    later = remind.options(delay="30s").enqueue()
    at = remind.options(run_at=clock.now() + timedelta(minutes=5)).enqueue()
    assert later.run_at == clock.now() + timedelta(seconds=30)
    assert at.run_at == clock.now() + timedelta(minutes=5)
    app.run_worker(burst=True)
    assert app.get_job(later.id).state == "pending"
    clock.advance(31)
    app.run_worker(burst=True)
    assert app.get_job(later.id).state == "complete"
    assert app.get_job(at.id).state == "pending"
    clock.advance(300)
    app.run_worker(burst=True)
    assert app.get_job(at.id).state == "complete"


def test_enqueue_by_name_and_options(app: App) -> None:
    @app.task(queue="content")
    def publish(ctx, video_id: int) -> None: ...

    job = app.enqueue("publish", {"video_id": 7}, queue="indexing", priority=9, max_attempts=2)
    assert (job.task, job.queue, job.priority, job.max_attempts) == ("publish", "indexing", 9, 2)
    # .options() returns a new handle; the task's own defaults are unchanged
    assert publish.options(queue="analytics").enqueue(video_id=1).queue == "analytics"
    assert publish.enqueue(video_id=2).queue == "content"


def test_enqueue_many_keeps_input_order_and_is_all_or_nothing(app: App) -> None:
    @app.task(queue="content")
    def thumb(ctx, n: int) -> None: ...

    jobs = thumb.enqueue_many([{"n": i} for i in range(2500)])
    assert [j.args["n"] for j in jobs] == list(range(2500))
    assert len({j.id for j in jobs}) == 2500 and jobs == sorted(jobs, key=lambda j: j.id)
    with pytest.raises(InvalidInput):
        thumb.enqueue_many([{"n": 1}, {"n": datetime.now()}])
    assert len(app.admin.list_jobs(limit=10_000)) == 2500
    assert thumb.enqueue_many([]) == []


@pytest.mark.parametrize("options", [{}, {"delay": "90s", "priority": 4}, {"run_at": "later"}])
def test_a_bulk_batch_stores_and_returns_what_single_enqueues_do(
    frozen_app: App, clock: FrozenClock, options: dict
) -> None:
    """Three statements insert jobs: one row of bound values (enqueue), a JSON batch (fewer
    than BULK_INSERT_MIN), the dialect's bulk insert (COPY on PostgreSQL). Each returned
    snapshot must be exactly the stored row, arguments to the right id, times on the
    database's (here the frozen) clock, the same whichever statement wrote it."""
    if options.get("run_at") == "later":
        options = {"run_at": clock.now() + timedelta(hours=2)}

    @frozen_app.task(queue="content")
    def thumb(ctx, n: int, name: str) -> None: ...

    handle = thumb.options(**options)
    args = [
        {"n": i, "name": f'tab\t, back\\slash, quote " and ü {i}'}
        for i in range(BULK_INSERT_MIN + 5)
    ]
    jobs = handle.enqueue_many(args)
    single = handle.enqueue(n=-1, name="single")
    pair = handle.enqueue_many(args[:2])
    assert [job.args for job in jobs + pair] == args + args[:2]
    assert [frozen_app.get_job(job.id) for job in [*jobs, single, *pair]] == [
        replace(job, children=[]) for job in [*jobs, single, *pair]
    ]
    assert {(j.created_at, j.run_at, j.priority, j.max_attempts) for j in jobs + pair} == {
        (single.created_at, single.run_at, single.priority, single.max_attempts)
    }
    assert [j.id for j in jobs] == sorted(j.id for j in jobs) and jobs[-1].id < single.id


def test_a_bulk_batch_wakes_listening_workers_on_postgres(pg_url: str) -> None:
    """COPY fires the insert trigger that sends NOTIFY, as an INSERT does."""
    with App(pg_url) as app:

        @app.task(queue="content")
        def thumb(ctx, n: int) -> None: ...

        assert not app.backend.wait_for_jobs(["content"], timeout=0.1)  # listening from here
        thumb.enqueue_many([{"n": i} for i in range(BULK_INSERT_MIN)])
        assert app.backend.wait_for_jobs(["content"], timeout=5)


def test_a_bulk_batch_on_postgres_looks_its_sequence_up_once(pg_url: str) -> None:
    """The ids of a COPY are taken first; with the sequence's lookup as nextval's argument it ran
    once per id, 4 of every 5 µs an id took. It must sit apart, in a one-row node of its own."""
    with App(pg_url) as app, psycopg.connect(pg_url) as conn:
        app.migrate()
        params = {"count": 1000, "now": None}
        plan = conn.execute("EXPLAIN VERBOSE " + QUERIES["job_reserve_ids"], params).fetchall()
        lines = [row[0] for row in plan]
        looked_up = [line for line in lines if "pg_get_serial_sequence" in line]
        assert looked_up and "rows=1 " in lines[lines.index(looked_up[-1]) - 1], "\n".join(lines)
        ids = [row[0] for row in conn.execute(QUERIES["job_reserve_ids"], params)]
        assert len(ids) == 1000 and ids == sorted(set(ids))


def test_idempotency_key_returns_the_existing_job(app: App) -> None:
    @app.task(queue="content")
    def publish(ctx, video_id: int) -> None: ...

    first = publish.options(idempotency_key="video-7").enqueue(video_id=7)
    again = publish.options(idempotency_key="video-7").enqueue(video_id=8)
    assert again.id == first.id and again.args == {"video_id": 7}
    assert app.enqueue("publish", {"video_id": 9}, idempotency_key="video-7").id == first.id
    assert len(app.admin.list_jobs()) == 1


def test_idempotency_key_holds_when_enqueues_race(make_app) -> None:
    apps = [make_app() for _ in range(8)]
    tasks = []
    for each in apps:

        @each.task(queue="content")
        def publish(ctx, video_id: int) -> None: ...

        tasks.append(publish)

    def enqueue(task) -> list[int]:
        return [task.options(idempotency_key=f"race-{n}").enqueue(video_id=n).id for n in range(20)]

    ids = [i for batch in run_together(enqueue, tasks) for i in batch]
    assert len(ids) == 160 and len(set(ids)) == 20
    assert len(apps[0].admin.list_jobs(limit=1000)) == 20


def test_run_at_is_stored_in_utc(make_app) -> None:
    app = make_app(clock=FrozenClock())

    @app.task(queue="content")
    def publish(ctx) -> None: ...

    paris = datetime(2031, 6, 1, 14, 0, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Europe/Paris")
    )
    job = publish.options(run_at=paris).enqueue()
    assert job.run_at == paris and job.run_at.utcoffset() == timedelta(0)
