"""Failure patterns (`Admin.failures`, `roadie failures`) on both backends: failed attempts
grouped by task and error signature, so one cause is one group however many jobs it hit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from roadie import App, FrozenClock, InvalidInput, Permanent, Transient
from roadie.admin import FailureGroup


@pytest.fixture
def app(frozen_app: App) -> App:
    return frozen_app


def drain(app: App) -> None:
    assert app.run_worker(burst=True, concurrency=1) == 0


def summary(groups: list[FailureGroup]) -> list[tuple[str, str, int, int, int]]:
    return [(g.task, g.signature, g.attempts, g.jobs, g.failed_jobs) for g in groups]


def test_one_cause_with_varying_details_is_one_group(app: App, clock: FrozenClock) -> None:
    @app.task(queue="notifications", max_attempts=2)
    def send_email(ctx, user: str) -> None:
        raise ConnectionError(
            f"cannot reach smtp.example.com:25 after {ctx.job.attempt + 2} tries "
            f"(job {ctx.job.id}, user '{user}', request {ctx.job.id:04x}f)"
        )

    jobs = send_email.enqueue_many([{"user": f"user-{i}@example.com"} for i in range(25)])
    drain(app)  # every first attempt fails and is retried
    clock.advance(3600)
    drain(app)  # every second attempt fails for good

    [group] = app.admin.failures()
    assert summary([group]) == [
        (
            "send_email",
            "ConnectionError: cannot reach smtp.example.com:N after N tries "
            "(job N, user '…', request <hex>)",
            50,
            25,
            25,
        )
    ]
    assert group.example_job == jobs[-1].id  # every last attempt ended at once: the newest job
    assert group.example_error.startswith(
        f"ConnectionError: cannot reach smtp.example.com:25 after 4 tries (job {jobs[-1].id}, "
    )
    assert group.first_seen == clock.now() - timedelta(seconds=3600)
    assert group.last_seen == clock.now()
    data = group.to_dict()
    assert set(data) == {
        "task", "signature", "attempts", "jobs", "failed_jobs", "first_seen", "last_seen",
        "example_job", "example_error",
    }  # fmt: skip
    assert data["last_seen"] == clock.now().isoformat() and data["attempts"] == 50


def test_different_tasks_and_error_types_are_different_groups(app: App) -> None:
    @app.task(queue="content")
    def thumbnail(ctx, size: int) -> None:
        if size < 0:
            raise ValueError(f"bad size {size}")
        raise KeyError(f"frame {size}")

    @app.task(queue="content")
    def transcode(ctx, size: int) -> None:
        raise ValueError(f"bad size {size}")

    thumbnail.enqueue_many([{"size": -1}, {"size": -20}, {"size": 3}])
    transcode.enqueue_many([{"size": 1}, {"size": 2}, {"size": 300}])
    drain(app)

    assert summary(app.admin.failures()) == [  # most attempts first
        ("transcode", "ValueError: bad size N", 3, 3, 3),
        ("thumbnail", "ValueError: bad size -N", 2, 2, 2),
        ("thumbnail", "KeyError: '…'", 1, 1, 1),
    ]


def test_retried_attempts_count_and_failed_jobs_only_those_failed_for_good(
    app: App, clock: FrozenClock
) -> None:
    @app.task(queue="indexing", max_attempts=3)
    def index(ctx, doc: int) -> None:
        raise Transient(f"search cluster busy (shard {doc})")

    @app.task(queue="indexing", max_attempts=3)
    def flaky(ctx, doc: int) -> str:
        if ctx.job.attempt == 1:
            raise Transient(f"search cluster busy (shard {doc})")
        return "indexed"

    index.enqueue_many([{"doc": 1}, {"doc": 2}])
    done = flaky.enqueue(doc=3)
    drain(app)
    clock.advance(3600)
    drain(app)
    assert app.get_job(done.id).state == "complete"
    assert summary(app.admin.failures()) == [
        ("index", "search cluster busy (shard N)", 4, 2, 0),  # retried, none failed yet
        ("flaky", "search cluster busy (shard N)", 1, 1, 0),  # its completion is no failure
    ]

    clock.advance(3600)
    drain(app)
    assert summary(app.admin.failures()) == [
        ("index", "search cluster busy (shard N)", 6, 2, 2),
        ("flaky", "search cluster busy (shard N)", 1, 1, 0),
    ]


def test_the_window_leaves_out_older_attempts(app: App, clock: FrozenClock) -> None:
    @app.task(queue="content", max_attempts=2)
    def render(ctx, n: int) -> None:
        raise TimeoutError(f"render {n} timed out after {n * 10}s")

    start = clock.now()
    old = render.enqueue(n=1)
    drain(app)  # old: attempt 1 retried at start
    clock.advance(10)
    drain(app)  # old: attempt 2 failed for good at start + 10s
    both = render.enqueue(n=2)
    drain(app)  # both: attempt 1 retried at start + 10s
    clock.advance(7200)
    drain(app)  # both: attempt 2 failed for good at start + 2h10s
    new = render.enqueue(n=3)
    drain(app)  # new: attempt 1 retried at start + 2h10s

    [recent] = app.admin.failures(window="1h")
    assert (recent.attempts, recent.jobs, recent.failed_jobs) == (2, 2, 1)
    assert recent.first_seen == recent.last_seen == clock.now()
    assert recent.example_job == new.id

    [everything] = app.admin.failures(window="3h")
    assert (everything.attempts, everything.jobs, everything.failed_jobs) == (5, 3, 2)
    assert everything.first_seen == start and everything.last_seen == clock.now()
    assert everything.example_job == new.id  # ended with `both`: the newer job is the example
    assert old.id < both.id < new.id

    clock.advance(2)
    assert app.admin.failures(window="1s") == []
    assert app.admin.failures(window="3s")[0].attempts == 2
    clock.advance(3600)
    assert app.admin.failures(window="1h") == []


def test_the_example_is_the_latest_failure(app: App, clock: FrozenClock) -> None:
    @app.task(queue="content")
    def probe(ctx, path: str) -> None:
        raise FileNotFoundError(f"no such file '{path}'")

    later = probe.options(delay="5s").enqueue(path="/media/b.mp4")
    first = probe.enqueue(path="/media/a.mp4")
    assert later.id < first.id
    start = clock.now()
    drain(app)  # only `first` is due
    clock.advance(5)
    drain(app)

    [group] = app.admin.failures()
    assert group.signature == "FileNotFoundError: no such file '…'"
    assert group.example_job == later.id
    assert group.example_error == "FileNotFoundError: no such file '/media/b.mp4'"
    assert (group.first_seen, group.last_seen) == (start, clock.now())


def test_queue_and_task_filters(app: App) -> None:
    @app.task(queue="content")
    def transcode(ctx) -> None:
        raise Permanent("codec missing")

    @app.task(queue="content")
    def thumbnail(ctx) -> None:
        raise Permanent("codec missing")

    @app.task(queue="notifications")
    def send_email(ctx) -> None:
        raise Permanent("codec missing")

    for task in (transcode, thumbnail, thumbnail, send_email):
        task.enqueue()
    drain(app)

    def tasks(**filters: str) -> list[tuple[str, int]]:
        return [(g.task, g.attempts) for g in app.admin.failures(**filters)]

    assert tasks() == [("thumbnail", 2), ("send_email", 1), ("transcode", 1)]
    assert tasks(queue="content") == [("thumbnail", 2), ("transcode", 1)]
    assert tasks(queue="notifications") == [("send_email", 1)]
    assert tasks(task="transcode") == [("transcode", 1)]
    assert tasks(queue="notifications", task="transcode") == []
    assert tasks(queue="analytics") == []
    for bad in ({"queue": "Bad Queue"}, {"task": "no spaces"}, {"window": "soon"}):
        with pytest.raises(InvalidInput):
            app.admin.failures(**bad)


def test_a_parent_failed_through_its_child_is_counted(app: App) -> None:
    @app.task(queue="content")
    def rendition(ctx) -> None:
        raise Permanent("disk /dev/sda1 is full")

    @app.task(queue="content")
    def publish(ctx) -> None:
        ctx.spawn(rendition)

    parent = publish.enqueue()
    drain(app)
    failed = app.get_job(parent.id)
    assert (failed.state, failed.failure) == ("failed", "child_failed")
    # The parent's own attempt completed: its failure is its end, counted once.
    assert summary(app.admin.failures()) == [
        ("publish", "child N failed: disk /dev/sdaN is full", 1, 1, 1),
        ("rendition", "disk /dev/sdaN is full", 1, 1, 1),
    ]
    [group, _] = app.admin.failures()
    assert group.example_job == parent.id and group.last_seen == failed.finished_at
