"""ctx.transaction(): a task's own writes commit exactly once, with its fenced completion."""

from __future__ import annotations

import pytest

from roadie import App, FrozenClock
from roadie.maintenance import Maintenance


def placeholder(app: App) -> str:
    return "?" if app.backend.dialect == "sqlite" else "%s"


@pytest.fixture
def effects_app(make_app) -> App:
    app = make_app(clock=FrozenClock())
    tx = app.backend.transaction_begin()
    tx.connection.execute("DROP TABLE IF EXISTS effects")
    tx.connection.execute(
        "CREATE TABLE effects (job_id bigint PRIMARY KEY, attempt integer NOT NULL)"
    )
    tx.commit()
    return app


def effects(app: App) -> list[tuple[int, int]]:
    tx = app.backend.transaction_begin()
    rows = tx.connection.execute("SELECT job_id, attempt FROM effects ORDER BY job_id").fetchall()
    tx.rollback()
    return [
        (row[0], row[1]) if isinstance(row, tuple) else (row["job_id"], row["attempt"])
        for row in rows
    ]


def test_effects_commit_with_the_completion(effects_app: App) -> None:
    app, ph = effects_app, placeholder(effects_app)

    @app.task(queue="indexing")
    def index(ctx, doc: int) -> str:
        with ctx.transaction() as conn:
            conn.execute(
                f"INSERT INTO effects (job_id, attempt) VALUES ({ph}, {ph})",
                (ctx.job.id, ctx.job.attempt),
            )
        return "indexed"

    jobs = index.enqueue_many([{"doc": i} for i in range(10)])
    app.run_worker(burst=True, concurrency=4)
    assert effects(app) == [(job.id, 1) for job in jobs]
    assert all(app.get_job(job.id).state == "complete" for job in jobs)


def test_effects_roll_back_when_the_task_raises_after_the_block(effects_app: App) -> None:
    app, ph = effects_app, placeholder(effects_app)

    @app.task(queue="indexing", max_attempts=2)
    def index(ctx) -> None:
        with ctx.transaction() as conn:
            conn.execute(
                f"INSERT INTO effects (job_id, attempt) VALUES ({ph}, {ph})",
                (ctx.job.id, ctx.job.attempt),
            )
        if ctx.job.attempt == 1:
            raise TimeoutError("search cluster timed out")

    job = index.enqueue()
    app.run_worker(burst=True)
    app.clock.advance(5)
    app.run_worker(burst=True)
    assert effects(app) == [(job.id, 2)]
    assert app.get_job(job.id).state == "complete"


def test_effects_never_commit_when_the_fence_fails(effects_app: App) -> None:
    """The lease is lost while the task runs: its effects are rolled back, the rerun's commit."""
    app, ph = effects_app, placeholder(effects_app)

    @app.task(queue="indexing")
    def index(ctx) -> None:
        if ctx.job.attempt == 1:
            app.clock.advance(31)
            Maintenance(app.backend).run_once()  # the lease expires and is reaped mid-run
        with ctx.transaction() as conn:
            conn.execute(
                f"INSERT INTO effects (job_id, attempt) VALUES ({ph}, {ph})",
                (ctx.job.id, ctx.job.attempt),
            )

    job = index.enqueue()
    app.run_worker(burst=True)
    after = app.get_job(job.id)
    assert [a["outcome"] for a in after.attempts] == ["lost", "complete"]
    assert effects(app) == [(job.id, 2)]


def test_transaction_is_once_per_attempt(effects_app: App) -> None:
    app = effects_app

    @app.task(queue="indexing")
    def twice(ctx) -> None:
        with ctx.transaction():
            pass
        with ctx.transaction():
            pass

    job = twice.enqueue()
    app.run_worker(burst=True)
    after = app.get_job(job.id)
    assert after.state == "failed" and "once per attempt" in after.error
