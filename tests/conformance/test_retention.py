"""The retention pruner on both backends: finished jobs older than the retention go, hour by
hour, into rollups; newer jobs, open jobs and failures awaiting review stay; counters hold.

Workers here keep every job (`retention=0`); each test prunes by hand with a 7-day retention.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roadie import App, FrozenClock, InvalidInput, Permanent, Transient
from roadie.backends.base import JobQuery
from roadie.maintenance import Maintenance

DAY = 86400.0
RETENTION = 7 * DAY
START = datetime(2030, 1, 1, tzinfo=UTC)  # FrozenClock's default start, on the hour


@pytest.fixture
def app(make_app: Callable[..., App], clock: FrozenClock) -> App:
    return make_app(clock=clock, retention=0)


def drain(app: App) -> None:
    assert app.run_worker(burst=True, concurrency=1) == 0


@pytest.fixture
def history(app: App, clock: FrozenClock) -> dict[str, Any]:
    """Jobs of hour 0 and hour 1 (to be pruned) and of day 7 (kept), with the ids that stay."""

    @app.task(queue="content")
    def timed(ctx, seconds: float) -> None:
        clock.advance(seconds)

    @app.task(queue="content")
    def broken(ctx) -> None:
        raise Permanent("bad data")

    @app.task(queue="notifications")
    def flaky(ctx) -> None:
        if ctx.job.attempt == 1:
            raise Transient("relay busy", retry_in=0)

    clock.advance(600)
    for seconds in (1, 3, 2):
        timed.enqueue(seconds=seconds)
    flaky.enqueue()
    resolved, unreviewed = broken.enqueue(), broken.enqueue()
    cancelled = timed.enqueue(seconds=9)
    app.admin.cancel([cancelled.id])
    drain(app)
    app.admin.resolve([resolved.id], "known bad input")
    clock.advance(3600)
    timed.enqueue(seconds=5)
    drain(app)
    clock.advance(7 * DAY - 3600)  # day 7, 00:10
    kept = timed.enqueue(seconds=4)
    drain(app)
    pending = timed.enqueue(seconds=1, run_in=3600)
    clock.advance(2 * 3600)  # now day 7, 02:10: hours 0 and 1 are older than 7 days
    return {
        "timed": timed.name,
        "broken": broken.name,
        "flaky": flaky.name,
        "stay": {unreviewed.id, kept.id, pending.id},
    }


def prune(app: App, **options: Any) -> tuple[int, bool]:
    return Maintenance(app.backend, retention=RETENTION).prune_jobs(**options)


def rows(app: App) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    """Every rollup, keyed (queue, task, hour from START, outcome)."""
    found = app.admin.history(START - timedelta(days=1))
    return {
        (row["queue"], row["task"], int((row["hour"] - START).total_seconds() // 3600),
         row["outcome"]): {key: row[key] for key in
                           ("jobs", "retries", "timed", "duration_sum", "p50", "p95", "p99")}
        for row in found
    }  # fmt: skip


def expected(names: dict[str, Any]) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    def rollup(jobs: int, retries: int, durations: list[float]) -> dict[str, Any]:
        ranked = sorted(durations)

        def rank(p: int) -> float | None:
            return float(ranked[(len(ranked) * p + 99) // 100 - 1]) if ranked else None

        return {
            "jobs": jobs, "retries": retries, "timed": len(ranked),
            "duration_sum": float(sum(ranked)), "p50": rank(50), "p95": rank(95), "p99": rank(99),
        }  # fmt: skip

    timed, broken, flaky = names["timed"], names["broken"], names["flaky"]
    return {
        ("content", timed, 0, "complete"): rollup(3, 0, [1, 3, 2]),
        ("content", timed, 0, "cancelled"): rollup(1, 0, []),
        ("content", broken, 0, "failed"): rollup(1, 0, [0]),
        ("notifications", flaky, 0, "complete"): rollup(1, 1, [0]),
        ("content", timed, 1, "complete"): rollup(1, 0, [5]),
    }


def remaining(app: App) -> set[int]:
    return {job.id for job in app.backend.job_list(JobQuery(limit=1000))}


def counters(app: App) -> dict[str, Any]:
    stats = app.stats()
    return {
        name: (entry["finished_total"], entry["retries_total"])
        for name, entry in [*stats["queues"].items(), ("", stats["total"])]
    }


def test_prunes_the_old_hours_into_rollups_and_keeps_the_rest(
    app: App, history: dict[str, Any]
) -> None:
    before = counters(app)
    assert before[""][0] == {"complete": 6, "failed": 2, "cancelled": 1}
    assert prune(app) == (7, True)
    assert remaining(app) == history["stay"]
    assert rows(app) == expected(history)
    assert counters(app) == before  # pruning never lowers the all-time counters
    assert app.stats()["total"]["depth"]["complete"] == 1
    assert app.stats()["total"]["review"] == 1


def test_twice_and_after_a_crash_counts_each_job_once(app: App, history: dict[str, Any]) -> None:
    hour = app.backend.job_prune_oldest_hour(START + timedelta(hours=2))
    assert hour == START
    app.backend.job_prune_hour(hour)  # a pruner that stopped after starting the hour
    app.backend.job_prune_hour(hour)
    assert prune(app, batch=2) == (7, True)
    assert prune(app) == (0, True)
    assert rows(app) == expected(history)
    assert remaining(app) == history["stay"]


def test_a_budget_stops_a_run_and_the_next_run_finishes(app: App, history: dict[str, Any]) -> None:
    assert prune(app, budget=3, batch=2) == (3, False)
    assert prune(app, budget=3, batch=2) == (3, False)
    assert prune(app, budget=3, batch=2) == (1, True)
    assert rows(app) == expected(history)


def test_concurrent_pruners_count_each_job_once(
    make_app: Callable[..., App], app: App, clock: FrozenClock, history: dict[str, Any]
) -> None:
    apps = [app, make_app(clock=clock, retention=0), make_app(clock=clock, retention=0)]
    results: list[int] = []
    barrier = threading.Barrier(len(apps))

    def run(one: App) -> None:
        barrier.wait()
        pruned, _ = prune(one, batch=1)
        results.append(pruned)

    threads = [threading.Thread(target=run, args=(one,)) for one in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    left, done = prune(app)  # a pruner that saw another holding its hour left the rest
    assert done and sum(results) + left == 7
    assert remaining(app) == history["stay"]
    assert rows(app) == expected(history)


def test_run_once_prunes_when_retention_is_set(app: App, history: dict[str, Any]) -> None:
    Maintenance(app.backend).run_once()  # no retention: keeps everything
    assert len(remaining(app)) == 10
    Maintenance(app.backend, retention=app.retention).run_once()  # the app's retention=0
    assert len(remaining(app)) == 10
    Maintenance(app.backend, retention=RETENTION).run_once()
    assert remaining(app) == history["stay"]


def test_retention_option(make_app: Callable[..., App]) -> None:
    assert make_app().retention == RETENTION  # the default: 7 days
    assert make_app(retention=None).retention is None
    assert make_app(retention="0").retention is None
    assert make_app(retention="30d").retention == 30 * DAY
    for bad in ("soon", -1, "10m", True):
        with pytest.raises(InvalidInput, match="retention") as caught:
            make_app(retention=bad)
        assert "\n" not in str(caught.value)


def test_workers_prune_with_the_app_retention_or_their_own(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    from roadie.worker import Worker

    seen: list[float | None] = []
    monkeypatch.setattr(Worker, "run", lambda self: seen.append(self._maintenance.retention) or 0)
    app = make_app(retention="30d")

    @app.task(queue="content")
    def noop(ctx) -> None:
        pass

    app.run_worker(burst=True)
    app.run_worker(burst=True, retention="2d")
    app.run_worker(burst=True, retention=0)
    assert seen == [30 * DAY, 2 * DAY, None]
    with pytest.raises(InvalidInput, match="retention"):
        app.run_worker(burst=True, retention="later")
