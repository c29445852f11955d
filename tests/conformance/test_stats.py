"""`app.stats()` on both backends, against jobs whose timings the test controls.

The database clock is frozen (`FrozenClock`); a task advances it by its own duration, so each
job's run time is exact, and the test moves time past windows, timeouts and `run_at`.
"""

from __future__ import annotations

import random

import pytest

from roadie import App, FrozenClock, InvalidInput, Permanent, Transient
from roadie.jobs import STATES

LEASE = 3600.0  # claims made by hand hold their lock while the test moves the clock
ENTRY_KEYS = {
    "depth", "duration", "finished", "failed", "throughput", "failure_rate", "duration_sum",
    "retries", "retries_total", "finished_total", "oldest_lock_age", "oldest_pending_age", "review", "stuck",
}  # fmt: skip


@pytest.fixture
def app(frozen_app: App) -> App:
    return frozen_app


@pytest.fixture
def timed(app: App, clock: FrozenClock):
    """A task that runs for exactly `seconds` of database time, failing when told to."""

    @app.task(queue="content")
    def timed(ctx, seconds: float, fail: bool = False) -> float:
        clock.advance(seconds)
        if fail:
            raise Permanent(f"failed after {seconds}s")
        return seconds

    return timed


def drain(app: App, queues: list[str] | None = None) -> None:
    assert app.run_worker(queues=queues, burst=True, concurrency=1) == 0


def test_depth_per_state_review_and_total(app: App) -> None:
    @app.task(queue="notifications")
    def notify(ctx, user: int) -> None:
        pass

    @app.task(queue="content")
    def publish(ctx, video: int) -> None:
        ctx.spawn(notify, user=video)

    @app.task(queue="content")
    def broken(ctx) -> None:
        raise Permanent("bad data")

    publish.enqueue(video=1)  # waits on its child, pending in notifications
    broken.enqueue()
    broken.enqueue()
    cancelled = notify.enqueue(user=2)
    app.admin.cancel([cancelled.id])
    notify.enqueue(user=3)
    drain(app, ["content"])
    # `publish` completes its own run but waits; its child and user 3 are pending; claim one.
    assert len(app.backend.job_claim("w-1", "notifications", 1, LEASE)) == 1
    stats = app.stats()

    content, notifications = stats["queues"]["content"], stats["queues"]["notifications"]
    assert set(stats["queues"]) == {"content", "notifications"}
    assert content["depth"] == {
        "pending": 0, "running": 0, "waiting": 1, "complete": 0, "failed": 2, "cancelled": 0
    }  # fmt: skip
    assert notifications["depth"] == {
        "pending": 1, "running": 1, "waiting": 0, "complete": 0, "failed": 0, "cancelled": 1
    }  # fmt: skip
    assert content["review"] == 2 and notifications["review"] == 0
    assert content["finished"] == 2 and content["failed"] == 2 and content["failure_rate"] == 1.0
    assert notifications["finished"] == 0 and notifications["failure_rate"] is None
    assert notifications["duration"] == {"p50": None, "p95": None, "p99": None}

    total = stats["total"]
    assert set(total) == set(content) == set(notifications) == ENTRY_KEYS
    assert total["depth"] == {
        state: content["depth"][state] + notifications["depth"][state] for state in STATES
    }
    for key in ("finished", "failed", "retries", "retries_total", "review", "stuck"):
        assert total[key] == content[key] + notifications[key], key
    assert stats["workers"] == {"alive": 0, "dead": 0, "stopped": 1}  # the burst worker

    # Resolving a review takes the job off the backlog; it stays failed.
    failed = app.admin.list_jobs(state="failed", queue="content")
    app.admin.resolve([failed[0].id], note="bad upload, told the user")
    after = app.stats(queue="content")["queues"]["content"]
    assert after["review"] == 1 and after["depth"]["failed"] == 2


def test_duration_percentiles_are_nearest_rank(app: App, timed) -> None:
    durations = list(range(1, 21))  # 1..20 s
    random.Random(4).shuffle(durations)
    for seconds in durations:
        timed.enqueue(seconds=seconds, fail=seconds in (7, 14))
    drain(app)
    entry = app.stats(window="1h")["queues"]["content"]
    # Nearest rank: p50 is the 10th of 20 values, p95 the 19th, p99 the 20th.
    assert entry["duration"] == {"p50": 10.0, "p95": 19.0, "p99": 20.0}
    assert entry["finished"] == 20 and entry["failed"] == 2
    assert entry["failure_rate"] == pytest.approx(0.1)
    assert entry["duration_sum"] == pytest.approx(210.0)
    assert entry["throughput"] == pytest.approx(20 / 3600)
    assert entry["depth"]["complete"] == 18 and entry["depth"]["failed"] == 2


def test_one_job_is_every_percentile(app: App, timed) -> None:
    timed.enqueue(seconds=2.5)
    drain(app)
    entry = app.stats()["total"]
    assert entry["duration"] == {"p50": 2.5, "p95": 2.5, "p99": 2.5}
    assert entry["failure_rate"] == 0.0


def test_window_excludes_jobs_finished_before_it(app: App, timed, clock: FrozenClock) -> None:
    for _ in range(3):
        timed.enqueue(seconds=1)
    drain(app)
    clock.advance(16 * 60)
    for _ in range(2):
        timed.enqueue(seconds=5, fail=True)
    drain(app)

    recent = app.stats(window="15m")["queues"]["content"]
    assert recent["finished"] == 2 and recent["failed"] == 2
    assert recent["duration"]["p50"] == 5.0 and recent["failure_rate"] == 1.0
    assert recent["throughput"] == pytest.approx(2 / 900)
    wide = app.stats(window="1h")["queues"]["content"]
    assert wide["finished"] == 5 and wide["failure_rate"] == pytest.approx(0.4)
    assert wide["duration"] == {"p50": 1.0, "p95": 5.0, "p99": 5.0}
    # Depth is "now", whatever the window.
    assert recent["depth"] == wide["depth"]
    assert recent["depth"]["complete"] == 3 and recent["depth"]["failed"] == 2


def test_retries_in_window_and_in_total(app: App, clock: FrozenClock) -> None:
    @app.task(queue="notifications")
    def flaky(ctx, later: bool) -> str:
        if ctx.job.attempt == 1:
            raise Transient("relay busy", retry_in="1h" if later else 0)
        return "sent"

    again = flaky.enqueue(later=False)  # retried at once, then completes
    waiting = flaky.enqueue(later=True)  # pending, its second attempt an hour away
    drain(app)
    assert app.get_job(again.id).state == "complete"
    assert app.get_job(waiting.id).state == "pending"

    entry = app.stats()["queues"]["notifications"]
    assert entry["retries"] == 2 and entry["retries_total"] == 2
    assert entry["finished"] == 1 and entry["failure_rate"] == 0.0
    assert entry["oldest_pending_age"] is None  # the retry is not due yet

    clock.advance(16 * 60)
    later = app.stats(window="15m")["queues"]["notifications"]
    assert later["retries"] == 0 and later["retries_total"] == 2


def test_oldest_lock_age(app: App, clock: FrozenClock) -> None:
    @app.task(queue="content")
    def transcode(ctx, n: int) -> None:
        pass

    @app.task(queue="indexing")
    def index(ctx) -> None:
        pass

    for n in range(3):
        transcode.enqueue(n=n)
    index.enqueue()
    assert len(app.backend.job_claim("w-1", "content", 1, LEASE)) == 1
    clock.advance(30)
    assert len(app.backend.job_claim("w-2", "content", 1, LEASE)) == 1
    clock.advance(15)

    stats = app.stats()
    assert stats["queues"]["content"]["oldest_lock_age"] == pytest.approx(45.0)
    assert stats["queues"]["indexing"]["oldest_lock_age"] is None
    assert stats["total"]["oldest_lock_age"] == pytest.approx(45.0)
    assert stats["queues"]["content"]["depth"]["running"] == 2


def test_oldest_pending_age_counts_due_jobs_only(app: App, clock: FrozenClock) -> None:
    @app.task(queue="content")
    def transcode(ctx) -> None:
        pass

    @app.task(queue="indexing")
    def index(ctx) -> None:
        pass

    transcode.enqueue()  # due at t0
    transcode.options(delay="10s").enqueue()  # due at t0 + 10 s
    index.options(delay="10m").enqueue()  # not due within this test's first steps
    clock.advance(40)

    stats = app.stats()
    assert stats["queues"]["content"]["oldest_pending_age"] == pytest.approx(40.0)
    assert stats["queues"]["indexing"]["oldest_pending_age"] is None
    assert stats["queues"]["indexing"]["depth"]["pending"] == 1
    assert stats["total"]["oldest_pending_age"] == pytest.approx(40.0)

    clock.advance(600)  # the delayed job became due 40 s ago
    assert app.stats()["queues"]["indexing"]["oldest_pending_age"] == pytest.approx(40.0)


def test_a_claimed_job_past_its_timeout_is_stuck(app: App, clock: FrozenClock) -> None:
    @app.task(queue="content", timeout="10s")
    def transcode(ctx) -> None:
        pass

    transcode.enqueue()
    assert len(app.backend.job_claim("w-1", "content", 1, LEASE)) == 1
    clock.advance(5)
    assert app.stats()["queues"]["content"]["stuck"] == 0
    clock.advance(6)
    stats = app.stats()
    assert stats["queues"]["content"]["stuck"] == 1 and stats["total"]["stuck"] == 1
    assert stats["queues"]["content"]["oldest_lock_age"] == pytest.approx(11.0)


def test_queue_filter(app: App, timed) -> None:
    @app.task(queue="notifications")
    def notify(ctx) -> None:
        pass

    timed.enqueue(seconds=3)
    notify.enqueue()
    notify.enqueue()
    drain(app, ["content"])

    only = app.stats(queue="content")
    assert list(only["queues"]) == ["content"]
    assert only["total"] == only["queues"]["content"]
    assert only["total"]["depth"]["complete"] == 1 and only["total"]["depth"]["pending"] == 0
    other = app.stats(queue="notifications")["total"]
    assert other["depth"]["pending"] == 2 and other["finished"] == 0
    empty = app.stats(queue="segmentation")
    assert list(empty["queues"]) == ["segmentation"]
    assert sum(empty["total"]["depth"].values()) == 0 and empty["total"]["oldest_lock_age"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": "0s"}, "window"),
        ({"window": "soon"}, "window"),
        ({"queue": "Not A Queue"}, "queue"),
    ],
)
def test_bad_input_is_refused(app: App, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        app.stats(**kwargs)
