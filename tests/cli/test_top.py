"""`roadie top` (one frame rendered to text) and `roadie failures`, on both backends."""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime

import pytest
from rich.console import Console

from roadie import App, FrozenClock, Permanent
from roadie.backends.base import WorkerInfo
from roadie.cli.top import render_top, snapshot
from roadie.errors import DatabaseUnavailable
from roadie.jobs import Fence, Job
from tests.cli.running import assert_error

WORKER = "render-host:4242:abc123"


def frame(app: App, queue: str | None = None, width: int = 160) -> str:
    """One frame of `roadie top`, as the text a terminal `width` columns wide would show."""
    out = Console(record=True, width=width, file=io.StringIO())
    out.print(render_top(snapshot(app.admin, queue)))
    return out.export_text()


def line_with(text: str, *needles: str) -> str:
    """The one line of `text` holding every needle."""
    lines = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert len(lines) == 1, (needles, text)
    return lines[0]


def row(text: str, first: str) -> list[str]:
    """The cells (split on blanks) of the one line whose first cell is `first`."""
    rows = [line.split() for line in text.splitlines() if line.split()[:1] == [first]]
    assert len(rows) == 1, (first, text)
    return rows[0]


def start_job(app: App, task: str, queue: str, lease: float = 30.0) -> Job:
    """Register WORKER, enqueue a job of `task` and claim it as WORKER, without running it."""
    app.backend.worker_heartbeat(WorkerInfo(WORKER, "render-host", 4242, ["content"], 4))
    app.enqueue(task, {})
    [job] = app.backend.job_claim(WORKER, queue, 1, lease)
    return job


def set_progress(app: App, job: Job, fraction: float, message: str) -> None:
    progress = json.dumps({"fraction": fraction, "message": message})
    assert app.backend.job_progress(Fence(job.id, job.attempt, WORKER), progress)


def define_tasks(app: App) -> None:
    @app.task(queue="content", timeout="10s")
    def transcode(ctx) -> None: ...

    @app.task(queue="content")
    def thumbnail(ctx) -> None: ...

    @app.task(queue="notifications")
    def send_email(ctx) -> None: ...


@pytest.fixture
def app(frozen_app: App) -> App:
    define_tasks(frozen_app)
    return frozen_app


# -- roadie top: one frame -------------------------------------------------------------------


def test_a_frame_shows_queues_running_jobs_and_workers(app: App) -> None:
    job = start_job(app, "transcode", "content")
    set_progress(app, job, 0.4, "encoding [bold] :warning:")
    app.enqueue("transcode", {})
    app.enqueue("send_email", {})
    app.admin.pause("notifications")

    text = frame(app)
    # queue, paused, pending, running, waiting, failed, rate/s, fail %, oldest pending,
    # oldest lock, stuck
    assert row(text, "content") == ["content", "1", "1", "0", "0", "0.00", "-", "0ms", "0ms", "0"]
    assert row(text, "notifications")[:4] == ["notifications", "PAUSED", "1", "0"]
    assert row(text, "total")[:3] == ["total", "2", "1"]

    running = line_with(text, "40%")
    assert running.split()[:4] == [str(job.id), "transcode", "content", WORKER]
    assert "40% encoding [bold] :warning:" in running  # shown as it is, never as markup
    assert "30s left" in running and "STUCK" not in text

    worker = row(text, WORKER)
    assert worker[1:5] == ["render-host", "4242", "content", "1"]
    assert worker[-1] == "alive"
    assert "workers 1 alive, 0 dead" in text and "running jobs (1)" in text


def test_rates_and_failure_rates_are_over_the_last_minute(app: App, clock: FrozenClock) -> None:
    @app.task(queue="content")
    def broken(ctx) -> None:
        raise Permanent("corrupt upload")

    for _ in range(3):
        app.enqueue("thumbnail", {})
    app.enqueue("broken", {})
    assert app.run_worker(burst=True, concurrency=1) == 0

    content = row(frame(app), "content")
    # pending, running, waiting, failed, rate/s (4 ended in the last 60 s), fail %
    assert content[1:7] == ["0", "0", "0", "1", "0.07", "25.0%"]
    clock.advance(61)
    assert row(frame(app), "content")[4:7] == ["1", "0.00", "-"]


def test_a_job_past_its_timeout_or_lease_shows_stuck(app: App, clock: FrozenClock) -> None:
    late = start_job(app, "transcode", "content")  # timeout 10s
    lost = start_job(app, "thumbnail", "content", lease=5.0)
    set_progress(app, lost, 0.95, "writing")
    before = frame(app)
    assert "STUCK" not in before
    assert row(before, "content")[-1] == "0"

    clock.advance(11)
    text = frame(app)
    assert line_with(text, "transcode", WORKER).split()[0] == str(late.id)
    assert "STUCK: past timeout" in line_with(text, "transcode", WORKER)
    stuck = line_with(text, "95% writing")
    assert stuck.split()[0] == str(lost.id)
    assert "STUCK: lease expired" in stuck and "expired 6.0s ago" in stuck
    assert row(text, "content")[-1] == "2"  # the queue's stuck count
    assert "2 STUCK" in text.splitlines()[0]
    assert row(text, WORKER)[-1] == "alive"  # heard of 11 s ago

    narrow = frame(app, width=80)  # the right-hand columns are cut, the rest stays readable
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert row(narrow, "content")[:3] == ["content", "0", "2"]
    assert line_with(narrow, "transcode").split()[:4] == [str(late.id), "STUCK:", "past", "timeout"]

    clock.advance(60)
    assert row(frame(app), WORKER)[-1] == "dead"


def test_a_frame_of_one_queue(app: App) -> None:
    start_job(app, "transcode", "content")
    app.enqueue("send_email", {})
    text = frame(app, "notifications")
    assert row(text, "notifications")[:3] == ["notifications", "1", "0"]  # pending, running
    assert "content" not in text  # neither the queue, its job nor its worker
    assert "running jobs (0)" in text and "workers (0)" in text


# -- roadie top through the command line ----------------------------------------------------


def test_top_once_prints_one_frame(roadie, db_url: str) -> None:
    with App(db_url) as app:
        define_tasks(app)
        job = start_job(app, "transcode", "content")
        set_progress(app, job, 0.4, "encoding")
        app.enqueue("send_email", {})

    run = roadie("top", "--once", "--database-url", db_url)
    assert run.code == 0 and run.err == ""
    running = line_with(run.out, "40% encoding")
    assert running.split()[:4] == [str(job.id), "transcode", "content", WORKER]
    assert row(run.out, WORKER)[-1] == "alive"
    assert row(run.out, "content")[:4] == ["content", "0", "1", "0"]
    assert row(run.out, "notifications")[:2] == ["notifications", "1"]

    only = roadie("top", "--once", "--queue", "notifications", "--database-url", db_url)
    assert only.code == 0 and "notifications" in only.out and WORKER not in only.out


def test_top_without_a_terminal_prints_one_frame(roadie, db_url: str, monkeypatch) -> None:
    def no_refresh(seconds: float) -> None:
        raise AssertionError("roadie top refreshed without a terminal")

    monkeypatch.setattr("roadie.cli.top.time.sleep", no_refresh)
    run = roadie("top", "--database-url", db_url)
    assert run.code == 0 and run.err == "" and "running jobs (0)" in run.out


def test_top_refreshes_until_ctrl_c(roadie, db_url: str, monkeypatch) -> None:
    """In a terminal, a frame every --interval; a refresh the database refuses is shown and
    the next one tried; Ctrl-C leaves with exit 0."""
    calls: list[str | None] = []
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    real = snapshot

    def counted(admin, queue=None):
        calls.append(queue)
        if len(calls) == 2:
            raise DatabaseUnavailable("database unreachable: connection refused")
        return real(admin, queue)

    def sleep(seconds: float) -> None:
        assert seconds == 0.25
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr("roadie.cli.top.snapshot", counted)
    monkeypatch.setattr("roadie.cli.top.time.sleep", sleep)
    run = roadie("top", "--interval", "250ms", "--queue", "content", "--database-url", db_url)
    assert run.code == 0 and run.err == ""
    assert calls == ["content"] * 3
    assert "refresh failed, showing the last frame: database unreachable" in run.out
    assert "running jobs (0)" in run.out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["top", "--interval", "soon"], "--interval"),
        (["top", "--interval", "0"], "--interval"),
        (["top", "--queue", "Bad Queue", "--once"], "queue"),
        (["failures", "--window", "soon"], "--window"),
        (["failures", "--window", "-1h"], "--window"),
        (["failures", "--window", "0s"], "--window"),
        (["failures", "--limit", "0"], "limit"),
        (["failures", "--queue", "Bad Queue"], "queue"),
        (["failures", "--task", "no spaces"], "task"),
    ],
)
def test_bad_input_is_one_line(roadie, db_url: str, argv: list[str], reason: str) -> None:
    run = roadie(*argv, "--database-url", db_url)
    assert_error(run, 2, reason)
    assert run.out == ""


# -- roadie failures -------------------------------------------------------------------------


def fail_jobs(db_url: str) -> dict[str, list[Job]]:
    """Eight jobs failing for one cause with different details, two for another."""
    with App(db_url) as app:

        @app.task(queue="notifications")
        def send_email(ctx, user: int) -> None:
            raise Permanent(f"cannot reach smtp.example.com:25 for user {user} (job {ctx.job.id})")

        @app.task(queue="content")
        def thumbnail(ctx, size: int) -> None:
            raise ValueError(f"bad size {size}")

        jobs = {
            "send_email": send_email.enqueue_many([{"user": 100 + i} for i in range(8)]),
            "thumbnail": thumbnail.enqueue_many([{"size": 0}, {"size": 7}]),
        }
        assert app.run_worker(burst=True, concurrency=1) == 0
        return jobs


def test_failures_table_is_one_line_per_cause(roadie, db_url: str) -> None:
    jobs = fail_jobs(db_url)
    run = roadie("failures", "--database-url", db_url)
    assert run.code == 0 and run.err == ""
    mail = line_with(run.out, "send_email")
    signature = "cannot reach smtp.example.com:N for user N (job N)"
    assert mail.split()[:3] == ["8", "8", "8"] and signature in mail
    assert f"job {jobs['send_email'][-1].id}: cannot reach smtp.example.com:25" in mail
    thumb = line_with(run.out, "thumbnail")
    assert thumb.split()[:3] == ["2", "2", "2"] and "ValueError: bad size N" in thumb
    assert run.out.index("send_email") < run.out.index("thumbnail")  # most frequent first
    assert "10 failed attempts in 2 groups over the last 24h" in run.out

    limited = roadie("failures", "--limit", "1", "--database-url", db_url)
    assert "thumbnail" not in limited.out and "(1 more group: raise --limit)" in limited.out
    only = roadie("failures", "--task", "thumbnail", "--database-url", db_url)
    assert "send_email" not in only.out and "2 failed attempts in 1 group " in only.out
    none = roadie("failures", "--queue", "analytics", "--database-url", db_url)
    assert none.code == 0 and "0 failed attempts in 0 groups" in none.out


def test_failures_json(roadie, db_url: str) -> None:
    jobs = fail_jobs(db_url)
    run = roadie("failures", "--json", "--window", "1h", "--database-url", db_url)
    assert run.code == 0 and run.err == ""
    mail, thumb = run.json()
    assert set(mail) == {
        "task", "signature", "attempts", "jobs", "failed_jobs", "first_seen", "last_seen",
        "example_job", "example_error",
    }  # fmt: skip
    last = jobs["send_email"][-1].id
    assert mail == {
        **mail,
        "task": "send_email",
        "signature": "cannot reach smtp.example.com:N for user N (job N)",
        "attempts": 8,
        "jobs": 8,
        "failed_jobs": 8,
        "example_job": last,
        "example_error": f"cannot reach smtp.example.com:25 for user 107 (job {last})",
    }
    assert datetime.fromisoformat(mail["first_seen"]) <= datetime.fromisoformat(mail["last_seen"])
    assert datetime.fromisoformat(mail["last_seen"]).utcoffset().total_seconds() == 0
    assert (thumb["task"], thumb["attempts"], thumb["signature"]) == (
        "thumbnail",
        2,
        "ValueError: bad size N",
    )
    assert roadie("failures", "--json", "--limit", "1", "--database-url", db_url).json() == [mail]
    assert roadie("failures", "--json", "--queue", "content", "--database-url", db_url).json() == [
        thumb
    ]


def test_failures_on_an_empty_database(roadie, db_url: str) -> None:
    assert roadie("failures", "--json", "--database-url", db_url).json() == []
    run = roadie("failures", "--database-url", db_url)
    assert run.code == 0 and run.out == "0 failed attempts in 0 groups over the last 24h\n"
