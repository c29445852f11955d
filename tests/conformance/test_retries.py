"""Retries on both backends: classification, backoff on the database clock, attempt records."""

from __future__ import annotations

from datetime import timedelta

import pytest

from roadie import App, Backoff, FrozenClock, Permanent, Transient


class RenditionServiceDown(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (Transient("relay busy"), True),
        (TimeoutError("read timed out"), True),
        (ConnectionError("refused"), True),
        (ConnectionResetError("reset"), True),
        (Permanent("bad data"), False),
        (ValueError("invalid data"), False),
        (KeyError("missing"), False),
        (ImportError("missing dependency"), False),
    ],
)
def test_default_classification(frozen_app: App, error: Exception, retried: bool) -> None:
    @frozen_app.task(queue="notifications")
    def send(ctx) -> None:
        raise error

    job = send.enqueue()
    frozen_app.run_worker(burst=True)
    after = frozen_app.get_job(job.id)
    assert after.attempt == 1
    assert after.state == ("pending" if retried else "failed")
    assert after.failure == (None if retried else "permanent")
    assert after.error and after.attempts[0]["outcome"] == ("retry" if retried else "failed")


def test_retry_on_makes_errors_transient_with_their_own_backoff(frozen_app: App, clock) -> None:
    slow = Backoff(base="10m", jitter=0)

    @frozen_app.task(queue="content", retry_on={RenditionServiceDown: slow, KeyError: None})
    def transcode(ctx, kind: str) -> None:
        raise RenditionServiceDown("down") if kind == "down" else KeyError(kind)

    down = transcode.enqueue(kind="down")
    key = transcode.enqueue(kind="k")
    frozen_app.run_worker(burst=True)
    assert frozen_app.get_job(down.id).run_at == clock.now() + timedelta(minutes=10)
    key_job = frozen_app.get_job(key.id)
    assert key_job.state == "pending"
    assert timedelta(seconds=0.8) <= key_job.run_at - clock.now() <= timedelta(seconds=1.2)


def test_app_wide_retry_on(make_app) -> None:
    app = make_app(retry_on=(RenditionServiceDown,), clock=FrozenClock())

    @app.task(queue="content")
    def transcode(ctx) -> None:
        raise RenditionServiceDown("down")

    job = transcode.enqueue()
    app.run_worker(burst=True)
    assert app.get_job(job.id).state == "pending"


def test_backoff_grows_on_the_database_clock_until_exhausted(frozen_app: App, clock) -> None:
    runs = []

    @frozen_app.task(queue="notifications", max_attempts=4, backoff=Backoff(base="2s", jitter=0))
    def send(ctx) -> None:
        runs.append(ctx.job.attempt)
        raise TimeoutError("smtp timed out")

    job = send.enqueue()
    gaps = []
    for _ in range(4):
        frozen_app.run_worker(burst=True)
        after = frozen_app.get_job(job.id)
        if after.state == "failed":
            break
        gap = (after.run_at - clock.now()).total_seconds()
        gaps.append(gap)
        clock.advance(gap - 0.001)
        frozen_app.run_worker(burst=True)  # not due yet: nothing runs
        clock.advance(0.001)
    assert runs == [1, 2, 3, 4]
    assert gaps == [2.0, 4.0, 8.0]
    failed = frozen_app.get_job(job.id)
    assert (failed.state, failed.failure, failed.attempt) == ("failed", "exhausted", 4)
    assert failed.needs_review
    assert [a["outcome"] for a in failed.attempts] == ["retry", "retry", "retry", "failed"]
    assert all(a["error"] == "TimeoutError: smtp timed out" for a in failed.attempts)
    assert all("TimeoutError" in a["traceback"] for a in failed.attempts)
    assert [a["attempt"] for a in failed.attempts] == [1, 2, 3, 4]


def test_transient_retry_in_overrides_backoff(frozen_app: App, clock) -> None:
    @frozen_app.task(queue="notifications")
    def send(ctx) -> None:
        raise Transient("421 try later", retry_in="90s")

    job = send.enqueue()
    frozen_app.run_worker(burst=True)
    after = frozen_app.get_job(job.id)
    assert after.run_at == clock.now() + timedelta(seconds=90)
    assert after.error == "421 try later"


def test_permanent_fails_at_once_and_is_flagged(frozen_app: App) -> None:
    @frozen_app.task(queue="content", max_attempts=10)
    def publish(ctx) -> None:
        raise Permanent("corrupt upload")

    job = publish.enqueue()
    frozen_app.run_worker(burst=True)
    after = frozen_app.get_job(job.id)
    assert (after.state, after.failure, after.attempt, after.error) == (
        "failed", "permanent", 1, "corrupt upload",
    )  # fmt: skip
    assert after.finished_at is not None and after.needs_review
    assert [j.id for j in frozen_app.admin.list_jobs(state="failed")] == [job.id]


def test_tracebacks_and_errors_are_truncated_to_64kb(frozen_app: App) -> None:
    @frozen_app.task(queue="content")
    def explode(ctx) -> None:
        raise ValueError("x" * 200_000)

    job = explode.enqueue()
    frozen_app.run_worker(burst=True)
    after = frozen_app.get_job(job.id)
    assert len(after.error.encode()) <= 64 * 1024 and after.error.endswith("[truncated]")
    assert len(after.attempts[0]["traceback"].encode()) <= 64 * 1024


def test_a_result_that_is_not_json_fails_the_job(frozen_app: App) -> None:
    @frozen_app.task(queue="content")
    def bad_result(ctx) -> object:
        return {"when": object()}

    job = bad_result.enqueue()
    frozen_app.run_worker(burst=True)
    after = frozen_app.get_job(job.id)
    assert after.state == "failed" and "not JSON" in after.error
