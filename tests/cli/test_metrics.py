"""Prometheus metrics and `roadie stats` / `roadie metrics` on both backends.

The metrics text is parsed with prometheus_client's own parser and compared with `app.stats()`
on a frozen database clock; `roadie metrics` runs as a real process, scraped over HTTP.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from roadie import App, DatabaseUnavailable, FrozenClock, Permanent, Transient
from roadie.cli.monitor import metrics_app
from roadie.jobs import STATES
from roadie.metrics import CONTENT_TYPE, make_registry, metrics_text
from tests.cli.running import assert_error
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
ROADIE = str(Path(sys.executable).with_name("roadie"))
APP = "tests.cli.sample_app:app"
LEASE = 3600.0
FAMILIES = {
    "roadie_queue_depth": "gauge",
    "roadie_job_duration_seconds": "summary",
    "roadie_jobs_finished": "counter",
    "roadie_job_retries": "counter",
    "roadie_lock_age_seconds": "gauge",
    "roadie_oldest_pending_age_seconds": "gauge",
    "roadie_review_backlog": "gauge",
    "roadie_stuck_jobs": "gauge",
    "roadie_failure_ratio": "gauge",
    "roadie_workers": "gauge",
}
ENTRY_KEYS = {
    "depth", "duration", "finished", "failed", "throughput", "failure_rate", "duration_sum",
    "retries", "retries_total", "finished_total", "oldest_lock_age", "oldest_pending_age",
    "review", "stuck",
}  # fmt: skip


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition text, by (sample name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


def same(metric: float, figure: float | None, none_as: float) -> bool:
    expected = none_as if figure is None else figure
    if math.isnan(expected):
        return math.isnan(metric)
    return metric == pytest.approx(expected)


@pytest.fixture
def busy_app(make_app) -> Iterator[tuple[App, FrozenClock]]:
    """Two queues with a bit of everything: timed completions, a failure, a retry, a held lock,
    a due pending job, a delayed one; and a third queue with nothing finished."""
    clock = FrozenClock()
    app = make_app(clock=clock)

    @app.task(queue="content")
    def transcode(ctx, seconds: float, fail: bool = False) -> None:
        clock.advance(seconds)
        if fail:
            raise Permanent("corrupt upload")

    @app.task(queue="notifications")
    def send_email(ctx, to: str) -> None:
        if ctx.job.attempt == 1:
            raise Transient("relay busy", retry_in=0)

    @app.task(queue="indexing")
    def index(ctx) -> None:
        pass

    for seconds in (1, 2, 3, 4):
        transcode.enqueue(seconds=seconds, fail=seconds == 4)
    send_email.enqueue(to="a@example.com")
    app.run_worker(burst=True, concurrency=1)
    transcode.enqueue(seconds=1)
    assert app.backend.job_claim("w-1", "content", 1, LEASE)
    index.enqueue()
    index.options(delay="1h").enqueue()
    clock.advance(20)
    yield app, clock


def test_metrics_text_equals_the_stats(busy_app: tuple[App, FrozenClock]) -> None:
    app, _ = busy_app
    stats = app.stats(window="5m")
    text = metrics_text(app.admin, window="5m").decode()
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types == FAMILIES
    parsed = samples(text)

    assert set(stats["queues"]) == {"content", "notifications", "indexing"}
    for queue, entry in stats["queues"].items():
        for state in STATES:
            got = value(parsed, "roadie_queue_depth", queue=queue, state=state)
            assert got == entry["depth"][state], (queue, state)
        for quantile, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
            got = value(parsed, "roadie_job_duration_seconds", queue=queue, quantile=quantile)
            assert same(got, entry["duration"][key], math.nan), (queue, quantile)
        assert value(parsed, "roadie_job_duration_seconds_count", queue=queue) == entry["finished"]
        assert value(parsed, "roadie_job_duration_seconds_sum", queue=queue) == pytest.approx(
            entry["duration_sum"]
        )
        for outcome in ("complete", "failed", "cancelled"):
            got = value(parsed, "roadie_jobs_finished_total", queue=queue, outcome=outcome)
            assert got == entry["finished_total"][outcome], (queue, outcome)
            assert got == entry["depth"][outcome], (queue, outcome)  # nothing pruned here
        assert value(parsed, "roadie_job_retries_total", queue=queue) == entry["retries_total"]
        got = value(parsed, "roadie_lock_age_seconds", queue=queue)
        assert same(got, entry["oldest_lock_age"], 0.0), queue
        got = value(parsed, "roadie_oldest_pending_age_seconds", queue=queue)
        assert same(got, entry["oldest_pending_age"], 0.0), queue
        assert value(parsed, "roadie_review_backlog", queue=queue) == entry["review"]
        assert value(parsed, "roadie_stuck_jobs", queue=queue) == entry["stuck"]
        got = value(parsed, "roadie_failure_ratio", queue=queue)
        assert same(got, entry["failure_rate"], math.nan), queue
    for state in ("alive", "dead", "stopped"):
        assert value(parsed, "roadie_workers", state=state) == stats["workers"][state]

    # The figures the fixture set up, so the comparison above is not between two zeros.
    assert value(parsed, "roadie_job_duration_seconds", queue="content", quantile="0.5") == 2.0
    assert value(parsed, "roadie_job_duration_seconds_count", queue="content") == 4
    assert value(parsed, "roadie_jobs_finished_total", queue="content", outcome="failed") == 1
    assert value(parsed, "roadie_failure_ratio", queue="content") == pytest.approx(0.25)
    assert value(parsed, "roadie_job_retries_total", queue="notifications") == 1
    assert value(parsed, "roadie_lock_age_seconds", queue="content") == pytest.approx(20.0)
    assert value(parsed, "roadie_oldest_pending_age_seconds", queue="indexing") == 20.0
    assert value(parsed, "roadie_queue_depth", queue="indexing", state="pending") == 2
    assert math.isnan(value(parsed, "roadie_failure_ratio", queue="indexing"))
    assert value(parsed, "roadie_workers", state="stopped") == 1


def entry(base: int, **overrides: Any) -> dict[str, Any]:
    """A stats entry whose every figure is distinct (base + a small offset)."""
    figures = {
        "depth": {state: base + i for i, state in enumerate(STATES)},
        "duration": {"p50": base + 0.5, "p95": base + 0.95, "p99": base + 0.99},
        "finished": base + 10, "failed": base + 11, "throughput": base + 12.5,
        "failure_rate": 0.125, "duration_sum": base + 13.5, "retries": base + 14,
        "retries_total": base + 15, "oldest_lock_age": base + 16.5,
        "oldest_pending_age": base + 17.5, "review": base + 18, "stuck": base + 19,
        "finished_total": {"complete": base + 20, "failed": base + 21, "cancelled": base + 22},
    }  # fmt: skip
    return {**figures, **overrides}


class FixedAdmin:
    def __init__(self, stats: dict[str, Any]) -> None:
        self.figures = stats

    def stats(self, **kw: Any) -> dict[str, Any]:
        return self.figures


def test_each_family_takes_its_own_figure() -> None:
    empty = entry(
        200,
        duration={"p50": None, "p95": None, "p99": None},
        failure_rate=None,
        oldest_lock_age=None,
        oldest_pending_age=None,
    )
    stats = {
        "at": "2030-01-01T00:00:00+00:00",
        "window": 300.0,
        "queues": {"content": entry(100), "indexing": empty},
        "total": entry(0),
        "workers": {"alive": 3, "dead": 2, "stopped": 1},
    }
    parsed = samples(metrics_text(FixedAdmin(stats)).decode())  # type: ignore[arg-type]
    content = {key: v for key, v in parsed.items() if ("queue", "content") in key[1]}
    assert content == {
        **{
            ("roadie_queue_depth", frozenset({("queue", "content"), ("state", s)})): 100 + i
            for i, s in enumerate(STATES)
        },
        **{
            ("roadie_job_duration_seconds", frozenset({("queue", "content"), ("quantile", q)})): v
            for q, v in (("0.5", 100.5), ("0.95", 100.95), ("0.99", 100.99))
        },
        ("roadie_job_duration_seconds_count", frozenset({("queue", "content")})): 110,
        ("roadie_job_duration_seconds_sum", frozenset({("queue", "content")})): 113.5,
        **{
            ("roadie_jobs_finished_total", frozenset({("queue", "content"), ("outcome", o)})): v
            for o, v in (("complete", 120), ("failed", 121), ("cancelled", 122))
        },
        ("roadie_job_retries_total", frozenset({("queue", "content")})): 115,
        ("roadie_lock_age_seconds", frozenset({("queue", "content")})): 116.5,
        ("roadie_oldest_pending_age_seconds", frozenset({("queue", "content")})): 117.5,
        ("roadie_review_backlog", frozenset({("queue", "content")})): 118,
        ("roadie_stuck_jobs", frozenset({("queue", "content")})): 119,
        ("roadie_failure_ratio", frozenset({("queue", "content")})): 0.125,
    }
    # Nothing finished in the window: NaN quantiles and ratio; no lock or due job: age 0.
    assert math.isnan(
        value(parsed, "roadie_job_duration_seconds", queue="indexing", quantile="0.99")
    )
    assert math.isnan(value(parsed, "roadie_failure_ratio", queue="indexing"))
    assert value(parsed, "roadie_lock_age_seconds", queue="indexing") == 0.0
    assert value(parsed, "roadie_oldest_pending_age_seconds", queue="indexing") == 0.0
    # Workers by state; the total is left to PromQL's sum(), never exported as a queue.
    assert {labels: v for (name, labels), v in parsed.items() if name == "roadie_workers"} == {
        frozenset({("state", "alive")}): 3,
        frozenset({("state", "dead")}): 2,
        frozenset({("state", "stopped")}): 1,
    }
    queues = {dict(labels).get("queue") for (_, labels) in parsed}
    assert queues == {"content", "indexing", None}


def test_window_moves_the_summary_not_the_counters(busy_app: tuple[App, FrozenClock]) -> None:
    app, clock = busy_app
    clock.advance(600)  # past the 5 minute window: nothing finished in it any more
    parsed = samples(metrics_text(app.admin, window="5m").decode())
    assert value(parsed, "roadie_job_duration_seconds_count", queue="content") == 0
    assert math.isnan(value(parsed, "roadie_job_duration_seconds", queue="content", quantile="0.5"))
    assert value(parsed, "roadie_jobs_finished_total", queue="content", outcome="complete") == 3
    wide = samples(metrics_text(app.admin, window="1h").decode())
    assert value(wide, "roadie_job_duration_seconds_count", queue="content") == 4


def test_one_stats_call_per_scrape(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = app.admin
    calls: list[Any] = []
    stats = admin.stats
    monkeypatch.setattr(admin, "stats", lambda **kw: calls.append(kw) or stats(**kw))
    registry = make_registry(admin, window="2m")
    assert calls == []  # registering reads nothing
    assert b"roadie_queue_depth" in metrics_text(admin, window="2m")
    assert b"roadie_workers" in generate_latest(registry)
    assert calls == [{"window": "2m"}, {"window": "2m"}]


def test_a_database_error_answers_503_in_one_line() -> None:
    class Down:
        def stats(self, **kw: Any) -> dict[str, Any]:
            raise DatabaseUnavailable("cannot reach PostgreSQL at db:5432")

    wsgi = metrics_app(make_registry(Down()))  # type: ignore[arg-type]
    answers: list[str] = []
    body = b"".join(
        wsgi({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"}, lambda s, h: answers.append(s))
    )
    assert answers == ["503 Service Unavailable"]
    assert body == b"# roadie: cannot reach PostgreSQL at db:5432\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_roadie_metrics_serves_until_signalled(make_app, db_url: str, signum: int) -> None:
    app = make_app()

    @app.task(queue="content")
    def transcode(ctx, n: int) -> None:
        pass

    for n in range(3):
        transcode.enqueue(n=n)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROADIE_")}
    proc = subprocess.Popen(
        [ROADIE, "metrics", "--port", str(port), "--database-url", db_url, "--window", "1m"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> tuple[int, str, str] | None:
            assert proc.poll() is None, proc.communicate()
            try:
                return scrape(f"{url}/metrics")
            except OSError:
                return None

        status, content_type, text = wait_until(answers, timeout=15, what="roadie metrics")
        assert status == 200 and content_type == CONTENT_TYPE
        parsed = samples(text)
        assert value(parsed, "roadie_queue_depth", queue="content", state="pending") == 3
        assert "# HELP roadie_job_duration_seconds" in text and "last 60s" in text
        transcode.enqueue(n=9)  # each scrape reads the database again
        parsed = samples(scrape(f"{url}/metrics")[2])
        assert value(parsed, "roadie_queue_depth", queue="content", state="pending") == 4
        assert scrape(f"{url}/")[0] == 404
    finally:
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"serving http://127.0.0.1:{port}/metrics" in err
    assert "Traceback" not in err


def test_roadie_metrics_refuses_a_bad_window_and_a_taken_port(roadie, db_url: str) -> None:
    assert_error(roadie("metrics", "--window", "soon", "--database-url", db_url), 2, "window")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        run = roadie("metrics", "--port", port, "--database-url", db_url)
    assert_error(run, 1, f"cannot listen on 127.0.0.1:{port}")


def test_stats_json_shape(roadie, db_url: str) -> None:
    with App(db_url) as app:

        @app.task(queue="content")
        def transcode(ctx) -> None:
            pass

        transcode.enqueue()
        transcode.enqueue()
        app.run_worker(burst=True, concurrency=1)
        transcode.enqueue()

    run = roadie("stats", "--json", "--database-url", db_url)
    assert run.code == 0, run.err
    stats = json.loads(run.out)
    assert set(stats) == {"at", "window", "queues", "total", "workers"}
    assert stats["window"] == 900.0  # --window 15m by default
    assert list(stats["queues"]) == ["content"]
    for entry in (stats["queues"]["content"], stats["total"]):
        assert set(entry) == ENTRY_KEYS
        assert set(entry["depth"]) == set(STATES)
        assert set(entry["duration"]) == {"p50", "p95", "p99"}
    assert stats["total"]["depth"]["complete"] == 2 and stats["total"]["depth"]["pending"] == 1
    assert stats["total"]["finished"] == 2 and stats["total"]["failure_rate"] == 0.0
    assert stats["total"]["duration"]["p50"] >= 0
    assert set(stats["workers"]) == {"alive", "dead", "stopped"}

    run = roadie(
        "stats", "--json", "--window", "1h", "--queue", "indexing", "--database-url", db_url
    )
    assert run.code == 0, run.err
    only = json.loads(run.out)
    assert only["window"] == 3600.0 and list(only["queues"]) == ["indexing"]
    assert sum(only["total"]["depth"].values()) == 0


def test_stats_table_has_a_row_per_queue_and_a_total(roadie, db_url: str) -> None:
    with App(db_url) as app:

        @app.task(queue="content")
        def publish_video(ctx, video_id: int) -> None:
            pass

        publish_video.enqueue(video_id=1)
        publish_video.enqueue(video_id=2)
    run = roadie("stats", "--app", APP, "--database-url", db_url)
    assert run.code == 0, run.err
    rows = {}
    for line in run.out.splitlines():
        cells = [cell.strip() for cell in re.split("[│┃]", line.strip(" │┃"))]
        if len(cells) > 5:
            rows[cells[0]] = cells
    header = rows.pop("queue")
    assert header[1:5] == ["pending", "running", "waiting", "failed"]
    # The app's task queues are listed even when empty.
    assert set(rows) == {"content", "notifications", "total"}
    assert rows["content"][1] == "2" and rows["notifications"][1] == "0"
    assert rows["total"][1] == "2"
    assert "workers: 0 alive, 0 dead, 0 stopped" in run.out


@pytest.mark.parametrize(
    ("argv", "contains"),
    [
        (["--window", "0s"], "--window must be longer than 0s"),
        (["--window", "fortnight"], "--window"),
        (["--queue", "Bad Queue"], "queue"),
    ],
)
def test_stats_bad_input_is_one_line_exit_2(roadie, db_url: str, argv: list, contains: str) -> None:
    assert_error(roadie("stats", *argv, "--database-url", db_url), 2, contains)
