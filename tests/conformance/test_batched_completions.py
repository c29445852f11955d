"""Batched completions on both backends: `job_complete_many` (one statement, fenced per job) and
the worker's completer, which hands plain completions to it in batches."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from roadie import App
from roadie.backends.base import Completion
from roadie.backends.postgres import QUERIES
from roadie.children import Rules
from roadie.errors import DatabaseUnavailable
from roadie.jobs import Fence
from roadie.maintenance import Maintenance
from roadie.worker import Worker
from tests.helpers import wait_until


@pytest.fixture
def frozen_app(frozen_app: App) -> App:
    @frozen_app.task(queue="content")
    def transcode(ctx, n: int = 0) -> None: ...

    return frozen_app


def claim(app: App, worker: str, limit: int) -> list[Fence]:
    jobs = app.backend.job_claim(worker, "content", limit, 30.0)
    return [Fence(job.id, job.attempt, worker) for job in sorted(jobs, key=lambda j: j.id)]


def test_a_batch_completes_each_job_it_still_holds_and_refuses_the_others(
    frozen_app: App, clock
) -> None:
    app, backend = frozen_app, frozen_app.backend
    app.tasks["transcode"].enqueue_many([{"n": i} for i in range(5)])
    fences = claim(app, "w1", 5)
    # job 0: reaped and taken by another worker (a new attempt); job 1: cancelled by an admin
    taken, cancelled = fences[0], fences[1]
    app.admin.cancel([cancelled.job_id])
    clock.advance(31)
    backend.lease_renew("w1", fences[1:], 30.0)
    assert [j.id for j in Maintenance(backend).run_once()["reaped"]] == [taken.job_id]
    [again] = claim(app, "w2", 1)
    assert (again.job_id, again.attempt) == (taken.job_id, 2)
    results = [f'{{"n":{i}}}' for i in range(5)]
    batch = [Completion(f, r) for f, r in zip(fences, results, strict=True)]
    done = backend.job_complete_many("w1", batch)
    assert done == {(f.job_id, f.attempt) for f in fences[2:]}
    for fence, result in zip(fences[2:], results[2:], strict=True):
        job = app.get_job(fence.job_id)
        assert (job.state, job.result, job.locked_by) == ("complete", {"n": int(result[5])}, None)
    assert app.get_job(taken.job_id).state == "running"
    assert app.get_job(taken.job_id).locked_by == "w2"
    assert app.get_job(cancelled.job_id).state == "cancelled"
    # a second write of the same batch changes nothing: each completion is recorded once
    assert backend.job_complete_many("w1", batch) == set()
    assert app.get_job(fences[2].job_id).attempts == app.get_job(fences[2].job_id).attempts[:1]


def test_a_batch_writes_what_the_single_path_writes(frozen_app: App, clock) -> None:
    app, backend = frozen_app, frozen_app.backend
    app.tasks["transcode"].enqueue_many([{"n": i} for i in range(4)])
    single, batched = claim(app, "w1", 2), claim(app, "w1", 2)
    results = ['{"video":7,"ok":true}', '["é",null,1.5]']
    clock.advance(2.5)
    for fence, result in zip(single, results, strict=True):
        assert backend.job_complete(fence, result)
    batch = [Completion(f, r) for f, r in zip(batched, results, strict=True)]
    assert backend.job_complete_many("w1", batch) == {(f.job_id, f.attempt) for f in batched}

    def shape(job_id: int) -> dict[str, Any]:
        data = app.get_job(job_id).to_dict()
        for key in ("id", "args", "created_at", "run_at", "started_at"):
            del data[key]
        for record in data["attempts"]:
            del record["started_at"]
        return data

    for a, b in zip(single, batched, strict=True):
        assert shape(a.job_id) == shape(b.job_id)
    job = app.get_job(batched[0].job_id)
    assert job.result == {"video": 7, "ok": True}
    assert job.attempts == [
        {
            "attempt": 1,
            "worker": "w1",
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "outcome": "complete",
            "error": None,
            "traceback": None,
        }
    ]
    assert app.get_job(batched[1].job_id).result == ["é", None, 1.5]


def test_a_batch_refuses_jobs_held_by_another_worker(frozen_app: App) -> None:
    backend = frozen_app.backend
    with pytest.raises(ValueError):
        backend.job_complete_many("w1", [Completion(Fence(1, 1, "w2"), "null")])
    assert backend.job_complete_many("w1", []) == set()


def spawn_children(app: App, rules: Rules, count: int) -> tuple[int, list[Fence]]:
    """A parent that spawned `count` children with `rules`, and the children claimed by w1."""
    transcode = app.tasks["transcode"]
    [parent] = transcode.enqueue_many([{}])
    [fence] = claim(app, "w0", 1)
    children = [app.new_job(transcode, {"n": i}, transcode.overrides) for i in range(count)]
    assert app.backend.job_complete(fence, "null", None, children, rules)
    fences = claim(app, "w1", count)
    return parent.id, [Fence(f.job_id, f.attempt, "w1", parent_id=parent.id) for f in fences]


def test_children_completed_in_one_batch_end_their_parent_once(frozen_app: App) -> None:
    app = frozen_app
    parent_id, children = spawn_children(app, Rules(), 5)
    first = app.backend.job_complete_many("w1", [Completion(f, "1") for f in children[:2]])
    assert len(first) == 2 and app.get_job(parent_id).state == "waiting"
    rest = app.backend.job_complete_many("w1", [Completion(f, "1") for f in children[2:]])
    assert len(rest) == 3
    parent = app.get_job(parent_id)
    assert (parent.state, parent.child_counts) == ("complete", {"complete": 5})


def test_a_batch_of_children_gets_one_callback_each(frozen_app: App) -> None:
    app = frozen_app

    @app.task(queue="content")
    def heard(ctx: Any, child: Any) -> None: ...

    parent_id, children = spawn_children(app, Rules(on_child_complete="heard"), 4)
    done = app.backend.job_complete_many("w1", [Completion(f, "1") for f in children])
    assert len(done) == 4
    assert app.get_job(parent_id).state == "waiting"
    callbacks = [j for j in app.admin.list_jobs(parent_id=parent_id) if j.callback_key]
    assert sorted(j.callback_key for j in callbacks) == sorted(
        f"child:{f.job_id}:1" for f in children
    )
    assert {(j.task, j.state) for j in callbacks} == {("heard", "pending")}


def test_callbacks_ending_in_one_batch_count_their_parent_s_open_jobs_once(
    frozen_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A count reads every open job under the parent. A batch's children get their callbacks
    in one insert, with one lock of the parent and no count; callbacks ending in one batch
    count once, since each would find the same. Told one by one, each counting, 10,000
    children with a callback each took 58.6 s on PostgreSQL."""
    app = frozen_app

    @app.task(queue="content")
    def heard(ctx: Any, child: Any) -> None: ...

    parent_id, children = spawn_children(app, Rules(on_child_complete="heard"), 6)
    statements: list[str] = []
    atomic = app.backend._atomic

    @contextmanager
    def recorded() -> Iterator[Any]:
        with atomic() as run:

            def recording(name: str, **params: Any) -> Any:
                statements.append(name)
                return run(name, **params)

            yield recording

    monkeypatch.setattr(app.backend, "_atomic", recorded)
    assert len(app.backend.job_complete_many("w1", [Completion(f, "1") for f in children])) == 6
    assert [statements.count(name) for name in ("job_lock", "job_insert_callbacks")] == [1, 1]
    assert statements.count("job_count_open") == 0
    callbacks = [Fence(f.job_id, f.attempt, "w2", parent_id) for f in claim(app, "w2", 6)]
    for batch, state in ((callbacks[:4], "waiting"), (callbacks[4:], "complete")):
        statements.clear()
        done = app.backend.job_complete_many("w2", [Completion(f, "null") for f in batch])
        assert len(done) == len(batch) and app.get_job(parent_id).state == state
        assert statements.count("job_count_open") == 1


class Gate:
    """Holds the worker's batched writes until opened; counts them."""

    def __init__(self, app: App) -> None:
        self.open = threading.Event()
        self.waiting = threading.Event()
        self.batches: list[int] = []
        self.calls: list[str] = []
        backend = app.backend
        complete_many, worker_stop = backend.job_complete_many, backend.worker_stop

        def gated(worker_id: str, done: Any) -> Any:
            self.waiting.set()
            self.open.wait(10)
            self.batches.append(len(done))
            self.calls.append("job_complete_many")
            return complete_many(worker_id, done)

        def stop(worker_id: str) -> None:
            self.calls.append("worker_stop")
            worker_stop(worker_id)

        backend.job_complete_many = gated  # type: ignore[method-assign]
        backend.worker_stop = stop  # type: ignore[method-assign]


def test_completions_are_written_in_batches_and_free_their_slots_first(app: App) -> None:
    @app.task(queue="content")
    def noop(ctx, n: int) -> int:
        return n

    gate = Gate(app)
    jobs = noop.enqueue_many([{"n": i} for i in range(50)])
    worker = Worker(app.backend, app.tasks, ["content"], concurrency=2, burst=True)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    gate.waiting.wait(10)
    # the first write is held; the slots were freed, so the worker ran all the others meanwhile
    # (in hand until written, so that their leases are renewed)
    wait_until(lambda: len(worker._inflight) == 50 and worker._running == 0, what="all run")
    wait_until(lambda: worker._completer.waiting() >= 45, what="all handed over")
    assert all(app.get_job(job.id).state == "running" for job in jobs)
    gate.open.set()
    thread.join(10)
    assert not thread.is_alive()
    assert sum(gate.batches) == 50 and len(gate.batches) == 2
    for job in jobs:
        after = app.get_job(job.id)
        assert (after.state, after.result, after.attempt) == ("complete", job.args["n"], 1)
        assert [a["outcome"] for a in after.attempts] == ["complete"]
    assert worker.processed == 50 and worker.lease_lost == 0


def test_burst_mode_drains_everything_before_exiting(app: App) -> None:
    @app.task(queue="content")
    def noop(ctx, n: int) -> None: ...

    @app.task(queue="content")
    async def anoop(ctx, n: int) -> str:
        return "async"

    noop.enqueue_many([{"n": i} for i in range(300)])
    anoop.enqueue_many([{"n": i} for i in range(100)])
    app.run_worker(queues=["content"], concurrency=8, burst=True)
    jobs = app.admin.list_jobs(limit=1000)
    assert len(jobs) == 400
    assert all(j.state == "complete" and len(j.attempts) == 1 for j in jobs)
    assert {j.result for j in jobs} == {"async", None}


def test_a_graceful_stop_writes_handed_over_completions_before_the_worker_stops(
    app: App,
) -> None:
    @app.task(queue="content")
    def noop(ctx, n: int) -> str:
        return "done"

    gate = Gate(app)
    jobs = noop.enqueue_many([{"n": i} for i in range(20)])
    worker = Worker(app.backend, app.tasks, ["content"], concurrency=4, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    gate.waiting.wait(10)
    wait_until(lambda: len(worker._inflight) == 20 and worker._running == 0, what="all run")
    worker.stop()
    thread.join(0.3)
    assert thread.is_alive()  # waiting for the completer, with the leases still renewed
    gate.open.set()
    thread.join(10)
    assert not thread.is_alive()
    assert all(app.get_job(job.id).state == "complete" for job in jobs)
    assert gate.calls[-1] == "worker_stop"
    assert [w.stopped_at is not None for w in app.backend.worker_list()] == [True]


def test_a_completion_refused_in_a_batch_is_counted_as_a_lost_lease(app: App) -> None:
    @app.task(queue="content")
    def noop(ctx, n: int) -> str:
        return "done"

    gate = Gate(app)
    jobs = noop.enqueue_many([{"n": i} for i in range(3)])
    worker = Worker(app.backend, app.tasks, ["content"], concurrency=4, burst=True)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    gate.waiting.wait(10)  # the first is being written: cancel one of those still waiting
    wait_until(lambda: len(worker._inflight) == 3 and worker._running == 0, what="all run")
    waiting = [job for job in jobs if app.get_job(job.id).state == "running"]
    app.admin.cancel([waiting[0].id])
    gate.open.set()
    thread.join(10)
    assert not thread.is_alive()
    assert worker.lease_lost == 1
    assert app.get_job(waiting[0].id).state == "cancelled"
    assert app.get_job(waiting[1].id).state == "complete"


def test_the_completer_retries_while_the_database_is_away(app: App) -> None:
    @app.task(queue="content")
    def noop(ctx, n: int) -> str:
        return "done"

    backend = app.backend
    complete_many = backend.job_complete_many
    failures = [DatabaseUnavailable("away"), DatabaseUnavailable("still away")]

    def flaky(worker_id: str, done: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return complete_many(worker_id, done)

    backend.job_complete_many = flaky  # type: ignore[method-assign]
    jobs = noop.enqueue_many([{"n": i} for i in range(5)])
    app.run_worker(queues=["content"], burst=True)
    assert failures == []
    assert all(app.get_job(job.id).state == "complete" for job in jobs)


def test_a_completion_waiting_past_its_self_fence_is_given_up(app: App) -> None:
    """The database stays away: the job is given up before its lease could run out, and stays
    running until a reaper returns it."""

    @app.task(queue="content")
    def noop(ctx) -> str:
        return "done"

    def away(worker_id: str, done: Any) -> Any:
        raise DatabaseUnavailable("away")

    app.backend.job_complete_many = away  # type: ignore[method-assign]
    app.backend.lease_renew = away  # type: ignore[method-assign]
    job = noop.enqueue()
    worker = Worker(app.backend, app.tasks, ["content"], lease=0.6, burst=True)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert worker.processed == 1
    after = app.get_job(job.id)
    assert (after.state, after.attempts) == ("running", [])


def test_a_batch_stamps_each_job_when_its_handler_returned_under_a_frozen_clock(
    frozen_app: App, clock
) -> None:
    app, backend = frozen_app, frozen_app.backend
    app.tasks["transcode"].enqueue_many([{"n": i} for i in range(2)])
    fences = claim(app, "w1", 2)
    first = clock.advance(1)
    clock.advance(1)
    backend.job_complete_many("w1", [Completion(fences[0], "1", first), Completion(fences[1], "2")])
    a, b = app.get_job(fences[0].job_id), app.get_job(fences[1].job_id)
    assert (a.finished_at, a.attempts[0]["finished_at"]) == (first, first)
    assert (b.finished_at, b.attempts[0]["finished_at"]) == (clock.now(), clock.now())


def test_a_hard_stop_does_not_wait_for_completions_the_database_refuses(app: App, caplog) -> None:
    """The database away and the worker told to stop now: it gives the waiting completions up,
    saying so; the jobs stay running until a reaper returns them (at-least-once)."""

    @app.task(queue="content")
    def noop(ctx, n: int) -> str:
        return "done"

    attempts: list[int] = []

    def away(worker_id: str, done: Any) -> Any:
        attempts.append(len(done))
        raise DatabaseUnavailable("away")

    app.backend.job_complete_many = away  # type: ignore[method-assign]
    jobs = noop.enqueue_many([{"n": i} for i in range(3)])
    worker = Worker(app.backend, app.tasks, ["content"], poll_interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_until(lambda: sum(attempts) >= 3 and worker._running == 0, what="writes refused")
    worker.stop(graceful=False)
    thread.join(5)
    assert not thread.is_alive()
    assert all(app.get_job(job.id).state == "running" for job in jobs)
    assert not worker._inflight
    assert "gave up recording its outcome" in caplog.text


def test_a_batch_on_postgres_is_looked_up_by_key_not_joined_whatever_the_statistics(
    pg_url: str,
) -> None:
    """Joined to the table, the batch's plan followed the statistics: with stale ones (a backlog
    just inserted, not yet analyzed) PostgreSQL scanned the whole batch once per running job,
    and a fresh 100,000-job backlog drained at 1,900 jobs/s instead of 13,000. The statement
    now finds its rows by id and looks each one's entry up, so no plan has a join to get wrong."""
    with App(pg_url) as app:

        @app.task(queue="content")
        def transcode(ctx) -> None: ...

        transcode.enqueue_many([{}] * 2000)
        fences = claim(app, "w1", 500)
        items = [(fence.job_id, fence.attempt, "null", None, 0.0) for fence in fences]
        params = {**app.backend._completion_batch(items), "worker_id": "w1", "now": None}
        with psycopg.connect(pg_url) as conn:
            for statistics in ("none", "analyzed"):
                if statistics == "analyzed":
                    conn.execute("ANALYZE roadie_jobs")
                else:  # as if never analyzed
                    conn.execute(
                        "DELETE FROM pg_statistic WHERE starelid = 'roadie_jobs'::regclass"
                    )
                plan = conn.execute("EXPLAIN " + QUERIES["job_complete_many"], params).fetchall()
                text = "\n".join(row[0] for row in plan)
                assert not {"Join", "Nested Loop", "Function Scan"} & set(text.split()), text
            conn.rollback()
        assert app.backend.job_complete_many("w1", [Completion(f, "null") for f in fences]) == {
            (fence.job_id, fence.attempt) for fence in fences
        }
