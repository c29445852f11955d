"""Scheduled jobs on both backends: pending jobs not yet due (delayed, or waiting out a retry's
backoff) stay out of the claim's index (migration 0008), without changing what a claim takes."""

from __future__ import annotations

import sqlite3

import psycopg

from roadie import App, FrozenClock, Transient
from roadie.backends.postgres import QUERIES
from roadie.maintenance import Maintenance
from roadie.worker import Worker
from tests.helpers import wait_until


def scheduled_flags(app: App) -> dict[int, bool]:
    """The internal `scheduled` column of every job, read straight from the database."""
    url = app.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT id, scheduled FROM roadie_jobs").fetchall()
    else:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT id, scheduled FROM roadie_jobs").fetchall()
    return {job_id: bool(flag) for job_id, flag in rows}


def test_delayed_jobs_are_scheduled_and_claimed_when_due_before_and_after_staging(
    frozen_app: App, clock: FrozenClock
) -> None:
    app = frozen_app

    @app.task(queue="content")
    def publish(ctx, n: int) -> None: ...

    now_job = publish.enqueue(n=0)
    later = publish.options(delay="10m").enqueue(n=1)
    at = publish.options(run_at=clock.now()).enqueue(n=2)  # an explicit time is a hint too
    bulk = publish.options(delay="20m").enqueue_many([{"n": n} for n in range(3, 43)])
    flags = scheduled_flags(app)
    assert not flags[now_job.id] and flags[later.id] and flags[at.id]
    assert all(flags[job.id] for job in bulk)

    claimed = app.backend.job_claim("w1", "content", 10, 30.0)
    assert {job.id for job in claimed} == {now_job.id, at.id}  # due: scheduled or not

    clock.advance(600)  # `later` came due: a claim takes it before any staging
    assert [job.id for job in app.backend.job_claim("w1", "content", 10, 30.0)] == [later.id]

    clock.advance(600)  # the bulk batch came due: staged, then claimed in id order
    maintenance = Maintenance(app.backend)
    assert maintenance.stage() == 40
    assert not any(scheduled_flags(app)[job.id] for job in bulk)
    assert maintenance.stage() == 0
    taken = app.backend.job_claim("w1", "content", 100, 30.0)
    assert [job.id for job in taken] == [job.id for job in bulk]


def test_a_retry_after_a_backoff_is_scheduled_and_an_admin_retry_is_not(
    frozen_app: App, clock: FrozenClock
) -> None:
    app = frozen_app

    @app.task(queue="content", max_attempts=2)
    def flaky(ctx) -> None:
        raise Transient("smtp down", retry_in=60)

    job = flaky.enqueue()
    maintenance = Maintenance(app.backend)
    assert Worker(app.backend, app.tasks, ["content"], burst=True).run() == 0
    assert app.get_job(job.id).state == "pending" and scheduled_flags(app)[job.id]
    clock.advance(60)
    assert Worker(app.backend, app.tasks, ["content"], burst=True).run() == 0
    assert app.get_job(job.id).state == "failed"
    app.admin.retry([job.id], actor="test")
    assert app.get_job(job.id).state == "pending" and not scheduled_flags(app)[job.id]
    assert maintenance.stage() == 0


def test_a_claim_on_postgres_reads_past_no_job_that_is_not_due(pg_url: str) -> None:
    """The cliff migration 0008 removed: each claim read past every job of its queue scheduled
    for later that sat ahead of the due ones (4 times slower with 100,000 of them)."""
    with App(pg_url) as app:

        @app.task(queue="content")
        def publish(ctx) -> None: ...

        publish.options(delay="1d").enqueue_many([{}] * 3000)
        publish.enqueue_many([{}] * 50)
        params = {"queue": "content", "limit": 20, "suspects": 1, "worker_id": "w1"}
        with psycopg.connect(pg_url) as conn:
            conn.execute("ANALYZE roadie_jobs")
            plan = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES["job_claim"],
                {**params, "lease": 30.0, "now": None},
            ).fetchone()[0]
            conn.rollback()

    def rows_read(node: dict) -> int:
        """Rows its scans returned or read and threw away."""
        own = 0
        if "Scan" in node["Node Type"]:
            own = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        return own + sum(rows_read(child) for child in node.get("Plans", []))

    # The parts that pick the candidates (fresh, came_due, suspect); how the update then finds
    # its 20 rows is the planner's choice for a table this small.
    picking = [
        node for node in plan[0]["Plan"]["Plans"] if node.get("Subplan Name", "").startswith("CTE")
    ]
    assert [node["Subplan Name"] for node in picking] == [
        "CTE fresh",
        "CTE came_due",
        "CTE suspect",
    ]
    assert sum(rows_read(node) for node in picking) < 200


def test_the_maintenance_loop_stages_between_its_sweeps(
    frozen_app: App, clock: FrozenClock
) -> None:
    """A sweep comes every 5 s by default; staging every second in between, so a mass of jobs
    that came due at once leaves the claim's slower path within about a second."""
    app = frozen_app

    @app.task(queue="content")
    def publish(ctx) -> None: ...

    jobs = publish.options(delay="1h").enqueue_many([{}] * 50)
    maintenance = Maintenance(app.backend, interval=3600.0)
    maintenance.start()
    try:
        assert all(scheduled_flags(app)[job.id] for job in jobs)  # not due: left alone
        clock.advance(3600)
        wait_until(lambda: not any(scheduled_flags(app).values()), timeout=5)
    finally:
        maintenance.stop()
