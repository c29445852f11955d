"""Bad inputs B1-B8 of FAULTS.md, on both engines, at every door roadie has.

Each input goes through the Python API, through `roadie enqueue` as a real process (exit 2, one
line `roadie: error: ...` on stderr, nothing written) and, where the dashboard's JSON API takes
that kind of input (filters, queue names, a retry's new arguments), through it too. Payloads
that cannot pass the API (B1, and names in B4/B7) are written into the database with plain SQL,
as an older release, a bug or a hand-edit would leave them, and must not hurt a worker or a page.

`tests/unit/test_bad_input.py` holds the exhaustive refusal tables of the Python API (every
bad duration, priority, key, URL...); this file adds what only a real database, a real worker,
a real CLI process or the dashboard can show, under the FAULTS.md ids.
"""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadie import App, InvalidInput, Transient, UnknownTask
from roadie.backends.base import SCHEMA
from roadie.config import QUEUE_NAME, TASK_NAME
from roadie.web import create_app
from roadie.worker import Worker
from tests.helpers import json_args, same, wait_until
from tests.processes.helpers import Database

if TYPE_CHECKING:  # `roadie enqueue` imports this module: it stays light
    from starlette.testclient import TestClient

LONG = os.environ.get("ROADIE_FAULTS") == "long"
ROOT = Path(__file__).resolve().parents[2]
ROADIE = Path(sys.executable).parent / "roadie"
SAMPLE_APP = "tests.cli.sample_app:app"  # publish_video(video_id, title), send_email(to, ...)
CLI_APP = "tests.faults.test_bad_inputs:cli_app"  # a small argument limit
CLI_LIMIT = 16 * 1024  # the CLI app's argument limit: far below what argv can carry (128 KB)
LIMIT = 256 * 1024  # roadie's default argument limit
MAX_ERROR = 64 * 1024  # stored errors and tracebacks

SETTINGS = settings(
    max_examples=200 if LONG else 25,
    derandomize=not LONG,  # `make test` sees the same examples each run; the long form explores
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

WORKER_SETTINGS = settings(SETTINGS, max_examples=100 if LONG else 8)  # a burst worker each

# The app `roadie enqueue` loads in the CLI tests (a real process imports this module).
cli_app = App(max_args_bytes=CLI_LIMIT)


@cli_app.task(queue="content")
def cli_echo(ctx: Any, **kwargs: Any) -> dict[str, Any]:
    return kwargs


# -- helpers -----------------------------------------------------------------------------------


def count(app: App) -> int:
    """Every job row, whatever its state (plain SQL: a refused call must write nothing)."""
    db = Database(app.database_url)
    try:
        return int(db.value("SELECT count(*) FROM roadie_jobs"))
    finally:
        db.close()


def assert_schema_intact(app: App) -> None:
    assert app.backend.schema_columns() == SCHEMA
    assert isinstance(app.admin.list_jobs(limit=1), list)


def refused(call: Callable[[], Any], kind: type[Exception] = InvalidInput) -> str:
    """`call` raises `kind` (an InvalidInput, so a ValueError) with a one-line message."""
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 500, message
    return message


def cli(db_url: str, *argv: str, app: str = SAMPLE_APP) -> subprocess.CompletedProcess[str]:
    """`roadie enqueue ...` as a real process on the test's database (the CLI tests' sample
    app, light to import, unless `app` says otherwise)."""
    return cli_all(db_url, [list(argv)], app=app)[0]


def cli_all(
    db_url: str, argvs: list[list[str]], app: str = SAMPLE_APP
) -> list[subprocess.CompletedProcess[str]]:
    """`roadie enqueue ARGV...` for each ARGV, as real processes run side by side (each costs
    a Python start-up); their results in order."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = []
    for argv in argvs:
        command = [str(ROADIE), "enqueue", *argv, "--app", app, "--database-url", db_url]
        running.append(
            (
                command,
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    results = []
    for command, process in running:
        out, err = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return results


def assert_cli_refused(done: subprocess.CompletedProcess[str], contains: str = "") -> None:
    """Exit 2, exactly one line on stderr starting `roadie: error:`, nothing on stdout."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("roadie: error: "), done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stdout
    assert contains.lower() in done.stderr.lower(), done.stderr


def start_worker(app: App, queues: list[str], **options: Any) -> tuple[Worker, threading.Thread]:
    worker = Worker(app.backend, app.tasks, queues, **options)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


@pytest.fixture
def dashboard(app: App) -> Iterator[TestClient]:
    """The dashboard on the test's app with an admin configured, as the admin."""
    from starlette.testclient import TestClient

    from tests.web.conftest import BASE_URL, basic

    web = create_app(app, auth="alice:admin-secret")
    with TestClient(
        web, base_url=BASE_URL, headers={"authorization": basic("alice", "admin-secret")}
    ) as client:
        yield client


# -- B1 malformed payload already in the database ----------------------------------------------

# Written by SQL over a valid job's arguments. PostgreSQL's `json` column refuses text that is
# not JSON at all (checked below); SQLite stores whatever text it is given.
NOT_JSON = ["{not json", "", '{"n": 1', "{'n': 1}", "NaN"]
WRONG_SHAPE = [
    "null",
    "[1, 2]",
    '"text"',
    "7",
    "{}",  # the required argument is missing
    '{"n": 1, "unexpected": 2}',
    '{"m": 1}',
    '{"n": "\\ud800"}',  # a lone surrogate: valid JSON text, not valid Unicode
    '{"n": 1e999}',  # valid JSON, out of float range: Infinity to Python
]


def test_b1_malformed_payload_fails_the_job_and_the_worker_goes_on(
    app: App, dashboard: TestClient
) -> None:
    """B1: every malformed payload fails its own job permanently (attempt 1, its error kept);
    the worker loop survives it, the jobs claimed with it in one batch are not harmed, and a
    job enqueued afterwards starts within 1 s of becoming due."""
    db = Database(app.database_url)
    ran: list[int] = []

    @app.task(queue="content", max_attempts=5)
    def echo(ctx: Any, n: int) -> Any:
        ran.append(ctx.job.id)
        return n

    payloads = WRONG_SHAPE + (NOT_JSON if db.sqlite else [])
    bad, good = {}, []
    for payload in payloads:
        good.append(echo.enqueue(n=len(good)).id)
        job = echo.enqueue(n=-1)
        db.rows("UPDATE roadie_jobs SET args = ? WHERE id = ?", payload, job.id)
        bad[job.id] = payload
    good.append(echo.enqueue(n=len(good)).id)
    if not db.sqlite:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            db.rows("UPDATE roadie_jobs SET args = ? WHERE id = ?", "{not json", good[0])

    # A listing (the CLI, the dashboard) copes with the rows before any worker does.
    assert {job.id for job in app.admin.list_jobs(limit=1000)} == set(bad) | set(good)
    assert dashboard.get("/api/jobs?limit=1000").status_code == 200
    for job_id in bad:
        assert dashboard.get(f"/api/jobs/{job_id}").status_code == 200
        assert dashboard.get(f"/jobs/{job_id}").status_code == 200

    worker, thread = start_worker(app, ["content"], concurrency=4, poll_interval=0.05)
    try:
        ids = list(bad) + good

        def settled() -> bool:
            return all(app.get_job(i).state in ("complete", "failed") for i in ids)

        wait_until(settled, 30, "every job settled", detail=lambda: app.admin.list_jobs())
        for job_id, payload in bad.items():
            job = app.get_job(job_id)
            assert (job.state, job.failure, job.attempt) == ("failed", "permanent", 1), (
                payload,
                job,
            )
            assert job.error and "\n" not in job.error, (payload, job.error)
            if (
                payload in NOT_JSON
                or payload in ("null", "[1, 2]", '"text"', "7")
                or "\\u" in payload
                or "1e999" in payload
            ):
                assert job.error == "malformed arguments: not a JSON object of keyword arguments"
            assert [a["outcome"] for a in job.attempts] == ["failed"], payload
        for job_id in good:
            job = app.get_job(job_id)
            assert (job.state, job.attempt) == ("complete", 1), job
        assert thread.is_alive(), "the worker loop died on a malformed payload"
        assert set(good) <= set(ran)

        # The worker still serves: a new job is picked up within 1 s of being enqueued.
        late = echo.enqueue(n=99)
        wait_until(lambda: app.get_job(late.id).state == "complete", 10, "the job after")
        after = app.get_job(late.id)
        pickup = (after.started_at - after.created_at).total_seconds()
        assert pickup < 1.0, pickup
        print(f"[faults-logic] B1 {db.url.split(':')[0]}: next job picked up in {pickup:.3f} s")
    finally:
        worker.stop()
        thread.join(10)
        db.close()
    assert not thread.is_alive()


# -- B2 unknown task ---------------------------------------------------------------------------


def test_b2_unknown_task_is_refused_at_enqueue(app: App, db_url: str) -> None:
    """B2 at the doors: the API and `roadie enqueue` refuse a task the app does not have;
    nothing is written. (The dashboard has no enqueue route.)"""

    @app.task(queue="content")
    def known(ctx: Any) -> None: ...

    for name in ("nope", "Known", "known ", "known\x00", ""):
        assert refused(lambda name=name: app.enqueue(name, {}), UnknownTask).startswith(
            "unknown task"
        )
    assert_cli_refused(cli(db_url, "send_email ", "--args", "{}"), "unknown task 'send_email '")
    assert count(app) == 0
    assert not any(
        method == "POST" and "enqueue" in path
        for method, path in (
            (m, r.path) for r in create_app(app).routes for m in getattr(r, "methods", None) or ()
        )
    )


def test_b2_stored_unknown_task_fails_once_and_is_kept(make_app: Callable[..., App]) -> None:
    """B2, rolling deploy: jobs of a task this worker does not have (enqueued by a newer release)
    fail permanently with "unknown task 'name'" at attempt 1, as DESIGN.md says (not
    backoff-retried as FAULTS.md suggests): no hot loop, nothing dropped, flagged for review,
    and an administrator's retry runs them once a worker has the task."""
    producer = make_app()

    @producer.task(queue="content")
    def new_feature(ctx: Any, n: int) -> int:
        return n

    @producer.task(queue="content")
    def old_feature(ctx: Any, n: int) -> int:
        return n

    unknown = [j.id for j in new_feature.enqueue_many([{"n": i} for i in range(20)])]
    known = [j.id for j in old_feature.enqueue_many([{"n": i} for i in range(20)])]

    consumer = make_app()  # the old release: it lacks new_feature

    @consumer.task(queue="content", name="old_feature")
    def old_feature_here(ctx: Any, n: int) -> int:
        return n

    worker, thread = start_worker(consumer, ["content"], concurrency=4, poll_interval=0.05)
    try:
        wait_until(
            lambda: all(consumer.get_job(i).state == "complete" for i in known),
            30,
            "the known jobs done",
        )
        wait_until(
            lambda: all(consumer.get_job(i).state == "failed" for i in unknown), 30, "unknown"
        )
        late = consumer.enqueue("old_feature", {"n": 0})  # the worker still serves
        wait_until(lambda: consumer.get_job(late.id).state == "complete", 10, "a later job")
    finally:
        worker.stop()
        thread.join(10)
    for job_id in unknown:
        job = consumer.get_job(job_id)
        assert (job.state, job.failure, job.attempt) == ("failed", "permanent", 1)
        assert job.error == "unknown task 'new_feature'" and job.needs_review
        assert [a["outcome"] for a in job.attempts] == ["failed"]  # one claim, no loop
    review = {job.id for job in consumer.admin.list_jobs(needs_review=True, limit=100)}
    assert review == set(unknown)
    # The new release arrives: an administrator's retry runs them, as a new attempt.
    consumer.admin.retry(unknown[:3])
    assert producer.run_worker(queues=["content"], burst=True) == 0
    for job_id in unknown[:3]:
        job = producer.get_job(job_id)
        assert (job.state, job.attempt, job.result) == ("complete", 2, job.args["n"])


# -- B3 oversized arguments and errors ---------------------------------------------------------


def test_b3_oversized_arguments_are_refused_whole(app: App, db_url: str) -> None:
    """B3: 1 MB and 100 MB of arguments are refused at enqueue (the 256 KB default limit), one
    by one and inside an `enqueue_many` batch (nothing of it written); refusing 100 MB takes
    memory proportional to the input (no blow-up); `roadie enqueue` refuses over its app's
    limit."""

    @app.task(queue="content")
    def store(ctx: Any, **kwargs: Any) -> None: ...

    one_mb = "x" * (1024 * 1024)
    message = refused(lambda: store.enqueue(blob=one_mb))
    assert "over the limit of 262144 bytes" in message
    refused(lambda: app.enqueue("store", {"blob": one_mb}))
    batch = [{"n": i} for i in range(500)] + [{"blob": one_mb}] + [{"n": -1}]
    refused(lambda: store.enqueue_many(batch))

    hundred_mb = "z" * (100 * 1024 * 1024)
    tracemalloc.start()
    try:
        refused(lambda: store.enqueue(blob=hundred_mb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(hundred_mb), f"refusing 100 MB took {peak / 2**20:.0f} MB"
    print(f"[faults-logic] B3: refusing 100 MB of arguments peaked at {peak / 2**20:.0f} MB")
    hundred_mb = ""
    assert count(app) == 0

    done = cli(db_url, "cli_echo", "--args", json.dumps({"b": "c" * CLI_LIMIT}), app=CLI_APP)
    assert_cli_refused(done, f"over the limit of {CLI_LIMIT} bytes")
    assert count(app) == 0
    # Each batch element under the limit: the batch is taken whole (the limit is per job).
    assert len(store.enqueue_many([{"part": "y" * 200_000}] * 3)) == 3


def test_b3_oversized_arguments_at_the_dashboard(app: App, dashboard: TestClient) -> None:
    """B3 at the dashboard's retry-with-new-arguments: over the app's limit is a 400, a body
    over the body limit a 413; the job is left as it was."""

    @app.task(queue="content")
    def store(ctx: Any, **kwargs: Any) -> None:
        raise ValueError("bad")

    job = store.enqueue(n=1)
    app.run_worker(burst=True)
    before = app.get_job(job.id)
    over = dashboard.post(f"/api/jobs/{job.id}/retry", json={"args": {"b": "x" * LIMIT}})
    assert over.status_code == 400 and "over the limit" in over.json()["error"], over.text
    huge = dashboard.post(
        f"/api/jobs/{job.id}/retry", json={"args": {"b": "x" * (4 * 1024 * 1024)}}
    )
    assert huge.status_code == 413, huge.text
    assert app.get_job(job.id) == before


def test_b3_stored_errors_are_truncated_to_64kb(app: App, dashboard: TestClient) -> None:
    """B3: a task raising a 1 MB message (retried, then failed) stores each error and
    traceback cut to 64 KB, and the dashboard serves the job in bounded size."""

    @app.task(queue="content", max_attempts=2)
    def explode(ctx: Any) -> None:
        raise Transient("é" * (512 * 1024), retry_in=0)  # 1 MB of UTF-8

    job = explode.enqueue()
    app.run_worker(burst=True)
    app.run_worker(burst=True)
    after = app.get_job(job.id)
    assert (after.state, after.failure, after.attempt) == ("failed", "exhausted", 2)
    for text in (after.error, *(a["error"] for a in after.attempts)):
        assert len(text.encode()) <= MAX_ERROR and text.endswith("[truncated]")
    for record in after.attempts:
        assert len(record["traceback"].encode()) <= MAX_ERROR
    response = dashboard.get(f"/api/jobs/{job.id}")
    assert response.status_code == 200 and len(response.content) < 8 * MAX_ERROR


# -- B4 hostile queue and task names -----------------------------------------------------------

CLASSIC_NAMES = [
    "q'; DROP TABLE jobs;--",
    "q'; DROP TABLE roadie_jobs;--",
    "<script>alert(1)</script>",
    "q" * 10_000,
    "",
    "content\x00",
    "\u202econtent",  # right-to-left override
    "محتوى",
    "../x",
    "..",
    "a/b",
    "content\n",
    "content ",
    "%00",
]
bad_queue = st.one_of(st.sampled_from(CLASSIC_NAMES), st.text(max_size=200)).filter(
    lambda s: not QUEUE_NAME.fullmatch(s)
)
bad_task = st.one_of(st.sampled_from(CLASSIC_NAMES), st.text(max_size=200)).filter(
    lambda s: not TASK_NAME.fullmatch(s)  # ".." is a valid task name (though no queue name)
)


@SETTINGS
@given(queue=bad_queue, task=bad_task)
def test_b4_hostile_names_are_refused_everywhere(
    app: App, dashboard: TestClient, queue: str, task: str
) -> None:
    """B4: a queue name outside `[a-z0-9_.-]{1,64}` or a task name outside
    `^[A-Za-z0-9_.:-]{1,128}$` is refused by the API (enqueue, task registration, listings) and
    by the dashboard's JSON API (filters, pause); the schema is intact and nothing is written."""
    if "echo" not in app.tasks:
        app.task(queue="content", name="echo")(lambda ctx, **kw: kw)
    assert "invalid queue name" in refused(lambda: app.enqueue("echo", {}, queue=queue))
    refused(lambda: app.tasks["echo"].options(queue=queue))
    refused(lambda: app.task(name="other", queue=queue)(lambda ctx: None))
    refused(lambda: app.task(name=task)(lambda ctx: None))
    refused(lambda: app.enqueue(task, {}), UnknownTask)
    refused(lambda: app.admin.list_jobs(queue=queue))
    for path in ("/api/jobs", "/api/stats"):
        response = dashboard.get(path, params={"queue": queue})
        if queue == "":  # an empty filter (as a form sends it) means no filter
            assert response.status_code == 200, (path, response.text)
        else:
            assert response.status_code == 400, (path, queue, response.text)
    page = dashboard.get("/jobs", params={"queue": queue})  # a page says so in a notice
    assert page.status_code in (200, 400), page.status_code
    unescaped = "<script>" in queue and queue in page.text
    assert not unescaped, "a filter value came back unescaped"
    if "/" not in queue and queue not in ("", ".", ".."):
        from urllib.parse import quote

        response = dashboard.post(f"/api/queues/{quote(queue, safe='')}/pause", json={})
        assert response.status_code in (400, 404), (queue, response.text)
    assert set(app.tasks) == {"echo"}
    assert count(app) == 0
    assert not [q for q in app.backend.queue_list() if q.paused]
    assert_schema_intact(app)


def test_b4_hostile_names_at_the_cli(app: App, db_url: str) -> None:
    """B4 through `roadie enqueue` as a real process: exit 2, one line, nothing written."""
    argvs = [  # (tests/cli/test_cli.py runs more of them in-process)
        ["publish_video", "--queue", "q'; DROP TABLE jobs;--"],
        ["publish_video", "--queue", "\u202econtent"],
        ["<script>"],
    ]
    for done in cli_all(db_url, [[*argv, "--args", '{"video_id": 1}'] for argv in argvs]):
        assert_cli_refused(done)
    assert count(app) == 0
    assert_schema_intact(app)


PAGES = ["/", "/jobs", "/queues", "/workers", "/locks", "/failures", "/review", "/audit"]
SCRIPT = "<script>alert(1)</script>"


def test_b4_hostile_names_stored_by_sql_are_escaped_on_every_page(
    app: App, dashboard: TestClient
) -> None:
    """B4: names the API refuses can still sit in the database (an older release, a hand-edit).
    Every page and the JSON API serve them as text: no `<script>` reaches a page unescaped,
    the names come back exactly in the JSON."""
    db = Database(app.database_url)

    @app.task(queue="content")
    def victim(ctx: Any) -> None:
        raise ValueError("x")

    names = {
        "queue": f"q{SCRIPT}\"'><img src=x onerror=alert(2)>",
        "task": f"t{SCRIPT}'; DROP TABLE roadie_jobs;--",
    }
    pending, failed = victim.enqueue(), victim.enqueue()
    db.rows(
        "UPDATE roadie_jobs SET queue = ?, task = ? WHERE id IN (?, ?)",
        names["queue"],
        names["task"],
        pending.id,
        failed.id,
    )
    db.rows(
        "UPDATE roadie_jobs SET state = 'failed', failure = 'permanent', needs_review = ?,"
        " error = ?, finished_at = created_at WHERE id = ?",
        True,
        SCRIPT,
        failed.id,
    )
    db.close()
    for path in [*PAGES, f"/jobs/{pending.id}", f"/jobs/{failed.id}", "/jobs?state=failed"]:
        response = dashboard.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert SCRIPT not in response.text and "<img src=x" not in response.text, path
    shown = dashboard.get(f"/api/jobs/{failed.id}").json()
    assert (shown["queue"], shown["task"], shown["error"]) == (
        names["queue"],
        names["task"],
        SCRIPT,
    )
    page = dashboard.get(f"/jobs/{failed.id}").text
    assert html.escape(names["task"], quote=False).split("'")[0] in page
    assert_schema_intact(app)


# -- B5 awkward but valid JSON: exact round trip through a real worker, or refused ------------


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.fixture
def echo_app(app: App) -> tuple[App, dict[int, Any]]:
    """`echo(**args)` records the arguments its handler received and returns them."""
    seen: dict[int, Any] = {}

    @app.task(queue="content")
    def echo(ctx: Any, **kwargs: Any) -> Any:
        seen[ctx.job.id] = kwargs
        return kwargs

    return app, seen


@WORKER_SETTINGS
@given(batch=st.lists(json_args, min_size=1, max_size=8))
def test_b5_json_arguments_round_trip_exactly_through_a_worker(
    echo_app: tuple[App, dict[int, Any]], batch: list[dict[str, Any]]
) -> None:
    """B5: NUL, RTL marks, integers beyond 64 bits, subnormal and signed-zero floats, nesting:
    what the handler receives, what it returns (the stored result) and the stored arguments
    are exactly what was enqueued, types included."""
    app, seen = echo_app
    jobs = app.tasks["echo"].enqueue_many(batch)
    assert app.run_worker(queues=["content"], burst=True, concurrency=2) == 0
    for job, args in zip(jobs, batch, strict=True):
        after = app.get_job(job.id)
        assert after.state == "complete", after.error
        assert same(seen[job.id], args), (seen[job.id], args)
        assert same(after.args, args) and same(after.result, args), (after.args, args)


def test_b5_edges_round_trip_or_are_refused(
    echo_app: tuple[App, dict[int, Any]], db_url: str, dashboard: TestClient
) -> None:
    """B5 edges, at the API, the CLI and the dashboard's retry: NaN/Infinity, lone surrogates
    and 10,000 levels of nesting are refused with nothing written; 200 levels, NUL and
    2^200 run and come back exactly; the worker survives all of it."""
    app, seen = echo_app
    echo = app.tasks["echo"]
    for bad in (
        {"x": math.nan},
        {"x": [1.0, -math.inf]},
        {"x": "\ud800"},
        {"\udfff": 1},
        {"x": nested(10_000)},
    ):
        refused(lambda bad=bad: echo.enqueue(**bad))
        refused(lambda bad=bad: echo.enqueue_many([{"ok": 1}, bad]))
    assert count(app) == 0
    *refusals, done = cli_all(
        db_url,
        [
            ["publish_video", "--args", '{"video_id": NaN}'],
            ["publish_video", "--args", '{"video_id": ' + "[" * 10_000 + "]" * 10_000 + "}"],
            ["publish_video", "--args", json.dumps({"video_id": 2**100}), "--json"],
        ],
    )
    for refusal in refusals:
        assert_cli_refused(refusal)
    assert done.returncode == 0, done.stderr
    assert count(app) == 1

    edges = {"deep": nested(200), "nul": "a\x00b", "\x00key": 0, "big": 2**200, "neg": -(2**70)}
    job = echo.enqueue(**edges)
    assert json.loads(done.stdout)["args"] == {"video_id": 2**100}
    assert app.run_worker(queues=["content"], burst=True) == 0
    after = app.get_job(job.id)
    assert after.state == "complete" and same(seen[job.id], edges) and same(after.result, edges)

    # The dashboard's retry with new arguments takes JSON text: the same refusals, nothing changed.
    failed = echo.enqueue(x=1)
    db = Database(app.database_url)
    db.rows(
        "UPDATE roadie_jobs SET state = 'failed', failure = 'permanent' WHERE id = ?", failed.id
    )
    db.close()
    before = app.get_job(failed.id)
    for body in (
        '{"args": {"x": NaN}}',
        '{"args": {"x": Infinity}}',
        '{"args": {"x": "\\ud800"}}',
        '{"args": {"x": ' + "[" * 10_000 + "]" * 10_000 + "}}",
        '{"args": [1, 2]}',
    ):
        response = dashboard.post(
            f"/api/jobs/{failed.id}/retry",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, (body[:40], response.status_code, response.text)
        assert "\n" not in response.json()["error"]
    assert app.get_job(failed.id) == before


# -- B6 Python objects that are not JSON: refused, never pickled -------------------------------


class Pickled(Exception):
    pass


class Sentinel:
    """Pickling or copying it would be noticed: roadie must only ever serialize JSON."""

    def __reduce__(self) -> Any:
        raise Pickled("roadie tried to pickle an argument")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise Pickled("roadie tried to pickle an argument")


not_json = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
    st.dates(),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.sets(st.integers(), max_size=3),
    st.frozensets(st.text(max_size=3), max_size=3),
    st.binary(max_size=8),
    st.builds(bytearray, st.binary(max_size=8)),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.builds(Sentinel),
    st.just(object()),
)


def hide(value: Any, path: list[int]) -> Any:
    """`value` placed inside JSON containers, one level per entry of `path`."""
    for step in path:
        value = {"k": value} if step % 2 else [0, value]
    return value


@SETTINGS
@given(value=not_json, path=st.lists(st.integers(0, 1), max_size=4))
def test_b6_python_objects_are_refused_at_enqueue(app: App, value: Any, path: list[int]) -> None:
    """B6: datetimes, dates, Decimals, sets, bytes, complex numbers, custom classes, at any
    depth inside JSON containers: refused with InvalidInput, never pickled, nothing written."""
    if "echo" not in app.tasks:
        app.task(queue="content", name="echo")(lambda ctx, **kw: kw)
    args = {"value": hide(value, path)}
    refused(lambda: app.tasks["echo"].enqueue(**args))
    refused(lambda: app.enqueue("echo", args))
    refused(lambda: app.tasks["echo"].enqueue_many([{"ok": 1}, args]))
    assert count(app) == 0


def test_b6_roadie_never_pickles() -> None:
    """B6: no module of roadie imports pickle (or marshal, shelve, dill): arguments, results
    and errors are only ever JSON, so a crafted job row cannot execute code in a worker."""
    sources = sorted((ROOT / "roadie").rglob("*.py"))
    assert len(sources) > 20
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for module in ("pickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"):
            assert f"import {module}" not in text and f"from {module}" not in text, (path, module)
    assert isinstance(Decimal("1"), Decimal)  # (Decimal is among the refused types above)


# -- B7 the dashboard and admin API ------------------------------------------------------------


@pytest.fixture
def no_login_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed logins are answered at once here (test_security.py checks the slowing itself)."""
    from roadie.web import auth

    monkeypatch.setattr(auth, "FAILED_LOGIN_DELAY", 0.0)


# tests/web/test_security.py enumerates the route table against no/wrong credentials, viewers,
# cross-site POSTs and GETs to actions; these add near-miss credentials, path tricks and
# hostile text from every field a user or a task controls.

NEAR_MISSES = [
    ("alice", "admin-secretX"),
    ("alice", "admin-secre"),
    ("alice", "Admin-secret"),
    ("alice", " admin-secret"),
    ("alice", "admin-secret "),
    ("alice", "admin-secret:"),
    ("alice", "admin-secret\x00"),
    ("alicex", "admin-secret"),
    ("xalice", "admin-secret"),
    ("Alice", "admin-secret"),
    ("alice:admin-secret", ""),
    ("", "alice:admin-secret"),
    (".*", ".*"),
    ("alice", ".*"),
    ("alice", "viewer-secret"),
    ("victor", "admin-secret"),
    ("", ""),
]


def test_b7_credentials_must_match_exactly(app: App, no_login_delay: None) -> None:
    """B7: credentials are compared whole (no prefix, suffix, case or pattern match, Flower
    CVE-2022-30034), and malformed Authorization headers are 401 too; the job is untouched."""
    import base64

    from starlette.testclient import TestClient

    from tests.web.conftest import BASE_URL

    @app.task(queue="content")
    def victim(ctx: Any) -> None: ...

    job = victim.enqueue()
    web = create_app(app, auth="alice:admin-secret", viewer_auth="victor:viewer-secret")

    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    headers = [header(u, p) for u, p in NEAR_MISSES] + [
        "Basic",
        "Basic ",
        "Basic !!!!",
        "Basic " + base64.b64encode(b"alice").decode(),
        "Basic " + base64.b64encode(b"alice:admin-secret").decode() + "x",
        "Basic " + base64.b64encode("alice:admin-secret".encode("utf-16")).decode(),
        "Bearer alice:admin-secret",
        "Digest username=alice",
        header("alice", "admin-secret") + " extra",
    ]
    with TestClient(web, base_url=BASE_URL) as client:
        for value in headers:
            for method, path, body in (
                ("GET", "/api/jobs", None),
                ("GET", "/jobs", None),
                ("POST", "/api/jobs/cancel", {"ids": [job.id]}),
                ("POST", f"/api/jobs/{job.id}/retry", {}),
            ):
                response = client.request(method, path, json=body, headers={"authorization": value})
                assert response.status_code == 401, (value, path, response.status_code)
        ok = client.get("/api/jobs", headers={"authorization": header("alice", "admin-secret")})
        assert ok.status_code == 200
    assert app.get_job(job.id).state == "pending" and app.admin.audit() == []


def test_b7_path_tricks_do_not_reach_protected_routes(app: App, no_login_delay: None) -> None:
    """B7: only `/healthz` is open; a path that merely starts, ends or mentions it, or that
    normalizes to a protected route, gets no data without credentials."""
    from starlette.testclient import TestClient

    from tests.web.conftest import BASE_URL

    @app.task(queue="content")
    def victim(ctx: Any, secret: str) -> None: ...

    victim.enqueue(secret="s3cr3t-value")
    web = create_app(app, auth="alice:admin-secret")
    with TestClient(web, base_url=BASE_URL) as client:
        open_text = client.get("/healthz").text
        for path in (
            "/healthz/../api/jobs",
            "/healthz/%2e%2e/api/jobs",
            "/healthz%2F..%2Fapi%2Fjobs",
            "/healthz/",
            "/healthz/x",
            "/healthzz",
            "/HEALTHZ",
            "/healthz;/api/jobs",
            "//api/jobs",
            "/./api/jobs",
            "/api/jobs/",
            "/api//jobs",
            "/api/jobs?next=/healthz",
            "/api/jobs#/healthz",
            "/metrics/",
            "/static/../api/jobs",
            "/static/%2e%2e/api/jobs",
        ):
            response = client.get(path)
            assert "s3cr3t-value" not in response.text, path
            assert response.status_code != 200 or response.text == open_text, (
                path,
                response.status_code,
            )


def test_b7_hostile_text_in_every_field_is_escaped(app: App, dashboard: TestClient) -> None:
    """B7: markup in a progress message, a result, an error, new arguments (and so the audit
    log), a review note and a worker's queue list shows as text on every page (CVE-2023-1892
    class), and comes back exactly from the JSON API."""

    @app.task(queue="content")
    def shows(ctx: Any) -> Any:
        ctx.progress(0.5, SCRIPT)
        return {"html": SCRIPT}

    @app.task(queue="content")
    def fails(ctx: Any, note: str = "") -> None:
        from roadie import Permanent

        raise Permanent(f"{SCRIPT} {note}")

    done, failed = shows.enqueue(), fails.enqueue(note=SCRIPT)
    app.run_worker(queues=["content"], burst=True)
    assert app.get_job(failed.id).state == "failed"
    response = dashboard.post(f"/api/jobs/{failed.id}/retry", json={"args": {"note": SCRIPT}})
    assert response.status_code == 200, response.text
    app.run_worker(queues=["content"], burst=True)
    resolved = dashboard.post("/api/review/resolve", json={"ids": [failed.id], "note": SCRIPT})
    assert resolved.status_code == 200, resolved.text
    for path in [*PAGES, f"/jobs/{done.id}", f"/jobs/{failed.id}", "/review?resolved=1"]:
        page = dashboard.get(path)
        assert page.status_code in (200, 400), (path, page.status_code)
        assert SCRIPT not in page.text, path
    shown = dashboard.get(f"/api/jobs/{done.id}").json()
    assert shown["result"] == {"html": SCRIPT} and shown["progress"]["message"] == SCRIPT
    failed_json = dashboard.get(f"/api/jobs/{failed.id}").json()
    assert SCRIPT in failed_json["error"] and failed_json["args"] == {"note": SCRIPT}
    assert html.escape(SCRIPT) in dashboard.get(f"/jobs/{failed.id}").text


# -- B8 out-of-range scheduling and retry options ----------------------------------------------


def test_b8_out_of_range_options_are_refused_at_the_api(app: App) -> None:
    """B8: negative delay, max_attempts 0 or 10^9, priority out of [-1000, 1000], run_at in
    year 9999 or naive: InvalidInput at enqueue (no clamping), one line naming the option."""

    @app.task(queue="content")
    def plan(ctx: Any) -> None: ...

    cases: list[tuple[dict[str, Any], str]] = [
        ({"delay": -1}, "delay"),
        ({"delay": "-5s"}, "delay"),
        ({"delay": timedelta(seconds=-1)}, "delay"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 10**9}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"priority": 1001}, "priority"),
        ({"priority": -1001}, "priority"),
        ({"priority": 2**63}, "priority"),
        ({"run_at": datetime(9999, 12, 31, tzinfo=UTC)}, "run_at"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at"),  # naive
        ({"run_at": datetime.now()}, "run_at"),  # naive
    ]
    for options, name in cases:
        assert name in refused(lambda options=options: app.enqueue("plan", {}, **options))
        assert name in refused(lambda options=options: plan.options(**options))
    refused(lambda: app.task(name="t0", max_attempts=0)(lambda ctx: None))
    refused(lambda: app.task(name="t1", priority=10**6)(lambda ctx: None))
    assert count(app) == 0
    # The edges themselves are taken.
    edge = plan.options(priority=1000, max_attempts=1000, delay=0).enqueue()
    assert (edge.priority, edge.max_attempts) == (1000, 1000)
    past = plan.options(run_at=datetime(2000, 1, 1, tzinfo=UTC)).enqueue()
    assert past.run_at == datetime(2000, 1, 1, tzinfo=UTC)  # already due: runs at once


def test_b8_out_of_range_options_at_the_cli_and_the_dashboard(
    app: App, db_url: str, dashboard: TestClient
) -> None:
    """B8 at `roadie enqueue` (a real process: exit 2, one line) and at the dashboard's
    admin actions that take durations (400, nothing done, nothing audited)."""
    cases = [(["--delay", "-5s"], "delay"), (["--priority", "1001"], "priority")]
    argvs = [["publish_video", "--args", '{"video_id": 1}', *argv] for argv, _ in cases]
    for done, (_, says) in zip(cli_all(db_url, argvs), cases, strict=True):
        assert_cli_refused(done, says)
    assert count(app) == 0

    for path, body in (
        ("/api/admin/expire-stuck", {"older_than": "-5s"}),
        ("/api/admin/expire-stuck", {"older_than": "NaN"}),
        ("/api/admin/clear-locks", {"dead_for": "-1s"}),
        ("/api/jobs/purge", {"state": "complete", "older_than": "-1d"}),
        ("/api/jobs/purge", {"state": "complete", "older_than": 1e400}),
    ):
        response = (
            dashboard.post(path, json=body)
            if body.get("older_than") != 1e400
            else (
                dashboard.post(
                    path,
                    content='{"state": "complete", "older_than": 1e400}',
                    headers={"content-type": "application/json"},
                )
            )
        )
        assert response.status_code == 400, (path, body, response.text)
        assert "\n" not in response.json()["error"]
    assert app.admin.audit() == []
