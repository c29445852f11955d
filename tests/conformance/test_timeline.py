"""`admin.timeline()` and `admin.alerts()` on both backends, with a frozen clock.

A task advances the clock by its own duration, so each job's creation and end fall exactly where
the test puts them, bucket boundaries included.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from roadie import App, FrozenClock, InvalidInput, Permanent
from tests.helpers import wait_until

LEASE = 7200.0  # claims made by hand keep their lock while the test moves the clock


@pytest.fixture
def app(frozen_app: App, clock: FrozenClock) -> App:
    @frozen_app.task(queue="content")
    def work(ctx, seconds: float = 0.0, fail: bool = False) -> None:
        clock.advance(seconds)
        if fail:
            raise Permanent("bad input")

    @frozen_app.task(queue="indexing")
    def index(ctx) -> None: ...

    return frozen_app


def run(app: App, queue: str = "content") -> None:
    assert app.run_worker(queues=[queue], burst=True, concurrency=1) == 0


def test_buckets_hold_what_was_created_finished_and_failed_in_them(
    app: App, clock: FrozenClock
) -> None:
    work, index = app.tasks["work"], app.tasks["index"]
    t0 = clock.now()
    clock.advance(-10)
    work.enqueue()  # created and finished before the window: not counted
    run(app)
    clock.advance(10)  # t0: the window's first instant
    work.enqueue()
    run(app)  # created and finished in bucket 0
    clock.advance(300)  # t0 + 5m: exactly the start of bucket 1
    work.enqueue(fail=True)
    run(app)  # created, finished and failed in bucket 1
    clock.advance(299.5)
    work.enqueue(seconds=1.0)
    run(app)  # created in bucket 1, finished at t0 + 600.5 in bucket 2
    clock.advance(1000 - 600.5)
    cancelled = work.enqueue()
    app.admin.cancel([cancelled.id])  # created in bucket 3; a cancel is no finish
    clock.advance(800)  # t0 + 1800
    index.enqueue()  # another queue, bucket 6, still pending
    clock.advance(1800)  # t0 + 3600: now, the last bucket's end
    work.enqueue()  # pending
    work.enqueue()
    assert len(app.backend.job_claim("w-1", "content", 1, LEASE)) == 1  # running

    line = app.admin.timeline("1h", 12)

    assert line["at"] == (t0 + timedelta(hours=1)).isoformat()
    assert line["since"] == t0.isoformat()
    assert line["bucket_seconds"] == 300.0
    assert line["starts"][0] == t0.isoformat()
    assert line["starts"][11] == (t0 + timedelta(minutes=55)).isoformat()
    content = line["queues"]["content"]
    assert content["created"] == [1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert content["finished"] == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert content["failed"] == [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert line["queues"]["indexing"] == {
        "created": [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        "finished": [0] * 12,
        "failed": [0] * 12,
    }
    assert list(line["queues"]) == ["content", "indexing"]
    assert line["total"]["created"] == [1, 2, 0, 1, 0, 0, 1, 0, 0, 0, 0, 2]
    assert line["total"]["finished"] == content["finished"]

    # Other cuts of the same hour, and one queue alone (listed even when empty).
    halves = app.admin.timeline("1h", 2)
    assert halves["queues"]["content"]["created"] == [4, 2]
    assert halves["queues"]["content"]["finished"] == [3, 0]
    assert halves["bucket_seconds"] == 1800.0
    only = app.admin.timeline("1h", 12, queue="indexing")
    assert list(only["queues"]) == ["indexing"] and sum(only["total"]["created"]) == 1
    empty = app.admin.timeline("1h", 12, queue="segmentation")
    assert empty["queues"] == {
        "segmentation": {k: [0] * 12 for k in ("created", "finished", "failed")}
    }
    # Ten minutes: only the pending and running jobs created now.
    recent = app.admin.timeline("10m", 2)
    assert recent["queues"]["content"]["created"] == [0, 2]
    assert recent["queues"]["content"]["finished"] == [0, 0]


def test_children_and_a_parent_that_waits(app: App, clock: FrozenClock) -> None:
    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn("index")
        ctx.spawn("index")

    publish.enqueue()
    run(app)  # the parent runs and waits; its children are pending in indexing
    line = app.admin.timeline("1h", 4)
    # The waiting parent is neither counted as created nor finished (see `timeline`).
    assert line["queues"]["indexing"]["created"] == [0, 0, 0, 2]
    assert sum(line["queues"].get("content", {"finished": [0]})["finished"]) == 0
    clock.advance(60)
    run(app, "indexing")
    run(app)  # callbacks, if any, and the parent's end
    line = app.admin.timeline("1h", 4)
    assert line["queues"]["indexing"]["finished"] == [0, 0, 0, 2]
    assert line["queues"]["content"]["created"] == [0, 0, 0, 1]
    assert line["queues"]["content"]["finished"] == [0, 0, 0, 1]


def test_bad_windows_and_bucket_counts_are_refused(app: App) -> None:
    for window, buckets in (("0s", 12), ("1h", 0), ("1h", 5000), ("soon", 12)):
        with pytest.raises(InvalidInput):
            app.admin.timeline(window, buckets)
    with pytest.raises(InvalidInput):
        app.admin.timeline("1h", 12, queue="Bad Queue")


# -- alerts ------------------------------------------------------------------------------------


def kinds(app: App) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for alert in app.admin.alerts():
        found.setdefault(alert.kind, []).append(alert.queue)
    return found


def test_backlog_when_a_due_job_waits_over_five_minutes(app: App, clock: FrozenClock) -> None:
    app.tasks["work"].enqueue()
    app.tasks["work"].options(delay="1h").enqueue()  # not due: never a backlog
    clock.advance(299)
    assert "backlog" not in kinds(app)
    clock.advance(2)
    [alert] = [a for a in app.admin.alerts() if a.kind == "backlog"]
    assert alert.queue == "content"
    assert "5m01s" in alert.message and "2 pending" in alert.message
    app.admin.pause("content")
    [alert] = [a for a in app.admin.alerts() if a.kind == "backlog"]
    assert "paused" in alert.message


def test_growing_when_jobs_arrive_faster_than_they_finish(app: App, clock: FrozenClock) -> None:
    work = app.tasks["work"]
    for _ in range(5):
        work.enqueue()
    run(app)  # 5 arrive and finish: steady
    work.enqueue_many([{}] * 9)
    assert "growing" not in kinds(app)  # 9 more than finished: under the floor of 10
    work.enqueue()
    assert kinds(app).get("growing") == ["content"]
    [alert] = [a for a in app.admin.alerts() if a.kind == "growing"]
    assert "15 jobs arrived and 5 finished" in alert.message and "10 pending" in alert.message
    # Nothing arrived in the last quarter hour: no longer growing (but now a backlog).
    clock.advance(20 * 60)
    run(app)
    work.enqueue_many([{}] * 12)
    clock.advance(16 * 60)
    found = kinds(app)
    assert "growing" not in found and found["backlog"] == ["content"]


def test_failures_spike_over_the_last_quarter_hour(app: App, clock: FrozenClock) -> None:
    work = app.tasks["work"]
    for fail in (True, True, True, True):
        work.enqueue(fail=fail)
    run(app)
    assert "failures" not in kinds(app)  # 4 finished: too few to judge
    work.enqueue()
    run(app)
    [alert] = [a for a in app.admin.alerts() if a.kind == "failures"]
    assert alert.queue == "content" and "4 of 5 jobs failed in the last 15m" in alert.message
    clock.advance(16 * 60)
    assert "failures" not in kinds(app)  # out of the last quarter hour


def test_failures_well_above_the_rest_of_the_hour(app: App, clock: FrozenClock) -> None:
    work = app.tasks["work"]
    work.enqueue_many([{"fail": i == 0} for i in range(100)])  # 1 % fail
    run(app)
    clock.advance(20 * 60)
    work.enqueue_many([{} for _ in range(10)])
    run(app)
    assert "failures" not in kinds(app)  # none failed lately
    work.enqueue_many([{"fail": True}] + [{} for _ in range(9)])
    run(app)
    assert kinds(app).get("failures") == ["content"]  # 1 in 20 (5 %): over 3 x 1 %


def test_stuck_when_a_lock_is_far_older_than_its_task_takes(app: App, clock: FrozenClock) -> None:
    work = app.tasks["work"]
    work.enqueue_many([{"seconds": 2.0} for _ in range(5)])
    run(app)  # the task's usual duration: 2 s
    slow = work.enqueue()
    [claimed] = app.backend.job_claim("w-1", "content", 1, LEASE)
    assert claimed.id == slow.id
    clock.advance(59)
    assert "stuck" not in kinds(app)  # under the floor of a minute
    clock.advance(2)
    [alert] = [a for a in app.admin.alerts() if a.kind == "stuck"]
    assert alert.queue == "content" and alert.job_ids == (slow.id,)
    assert f"job {slow.id} (work)" in alert.message and "usually takes 2.0s" in alert.message
    assert alert.to_dict()["job_ids"] == [slow.id]


def test_a_long_held_snapshot_alerts_on_postgresql_only(
    app: App, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F18: a transaction that keeps its snapshot stops PostgreSQL from removing dead job rows;
    past ALERT_SNAPSHOT_AGE (lowered here from 5 minutes) the overview says so."""
    import roadie.admin

    assert not [a for a in app.admin.alerts() if a.kind == "snapshot"]
    monkeypatch.setattr(roadie.admin, "ALERT_SNAPSHOT_AGE", 0.2)
    if db_url.startswith("sqlite"):
        assert app.backend.oldest_snapshot() is None
        return
    import psycopg

    with psycopg.connect(db_url, application_name="reporting") as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM roadie_jobs")
        snapshot = wait_until(
            lambda: [a for a in app.admin.alerts() if a.kind == "snapshot"], 10, "the alert"
        )
        assert "reporting" in snapshot[0].message and snapshot[0].queue == ""
        holder.rollback()
    assert not [a for a in app.admin.alerts() if a.kind == "snapshot"]
