"""The `roadie` command, driven in-process (`roadie.cli.main`) and through the console script.

Every test runs on a real SQLite file and on the real PostgreSQL (`db_url`). The contract under
test (DESIGN.md): exit 0 on success, 1 when an operation failed, 2 for bad usage or bad input,
and then exactly one line on stderr, `roadie: error: ...`, with no usage dump and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from roadie import App
from tests.cli.running import assert_error

ROOT = Path(__file__).resolve().parents[2]
ROADIE = str(Path(sys.executable).with_name("roadie"))
APP = "tests.cli.sample_app:app"
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/x"

JOB_KEYS = {
    "id", "queue", "task", "args", "priority", "state", "attempt", "max_attempts", "created_at",
    "run_at", "started_at", "finished_at", "result", "error", "failure", "progress", "parent_id",
    "locked_by", "lock_expires_at", "idempotency_key",
}  # fmt: skip
TIME_KEYS = ("created_at", "run_at", "started_at", "finished_at", "lock_expires_at")
ATTEMPT_KEYS = {"attempt", "worker", "started_at", "finished_at", "outcome", "error", "traceback"}


def count_jobs(url: str) -> int:
    with App(url) as app:
        return len(app.admin.list_jobs(limit=10_000))


def assert_job_json(job: dict[str, Any]) -> None:
    assert set(job) >= JOB_KEYS, JOB_KEYS - set(job)
    for key in ("id", "priority", "attempt", "max_attempts"):
        assert type(job[key]) is int, (key, job[key])
    assert job["parent_id"] is None or type(job["parent_id"]) is int
    for key in TIME_KEYS:
        if job[key] is not None:
            assert isinstance(job[key], str), (key, job[key])
            stamp = datetime.fromisoformat(job[key])
            assert stamp.utcoffset() == timedelta(0), (key, job[key])
    assert isinstance(job["created_at"], str) and isinstance(job["run_at"], str)


def enqueue(roadie, url: str, task: str, args: dict[str, Any], *extra: str) -> dict[str, Any]:
    run = roadie(
        "enqueue", task, "--args", json.dumps(args), "--app", APP, "--database-url", url,
        "--json", *extra,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.err == ""
    return run.json()


# -- migrate -----------------------------------------------------------------------------------


def test_migrate_applies_once_then_reports_up_to_date(roadie, sqlite_url: str) -> None:
    first = roadie("migrate", "--database-url", sqlite_url)
    assert first.code == 0 and first.err == ""
    assert "applied migrations 0001" in first.out
    second = roadie("migrate", "--database-url", sqlite_url)
    assert second.code == 0 and second.err == ""
    assert "up to date" in second.out
    assert count_jobs(sqlite_url) == 0


def test_migrate_on_a_migrated_database_is_idempotent(roadie, db_url: str) -> None:
    for _ in range(2):
        run = roadie("migrate", "--database-url", db_url)
        assert run.code == 0 and run.err == ""
        assert "up to date" in run.out


@pytest.fixture
def fresh_pg(pg_server_url: str) -> Iterator[str]:
    """An empty PostgreSQL database without roadie's tables."""
    from tests.conftest import PG_ADMIN_URL, _with_database

    name = f"roadie_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(PG_ADMIN_URL, name)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_a_fresh_postgresql_database_twice(roadie, fresh_pg: str) -> None:
    assert "applied migrations 0001" in roadie("migrate", "--database-url", fresh_pg).out
    again = roadie("migrate", "--database-url", fresh_pg)
    assert again.code == 0 and "up to date" in again.out


# -- enqueue -----------------------------------------------------------------------------------


def test_enqueue_prints_the_job(roadie, db_url: str) -> None:
    run = roadie(
        "enqueue", "publish_video", "--args", '{"video_id": 7}', "--app", APP,
        "--database-url", db_url,
    )  # fmt: skip
    assert run.code == 0 and run.err == ""
    assert run.out.startswith("enqueued job 1 ")
    assert "publish_video" in run.out and "content" in run.out and "pending" in run.out


def test_enqueue_json_with_every_option(roadie, db_url: str) -> None:
    plain = enqueue(roadie, db_url, "publish_video", {"video_id": 7, "title": "clip ✓"})
    assert_job_json(plain)
    assert plain["task"] == "publish_video" and plain["queue"] == "content"
    assert plain["args"] == {"video_id": 7, "title": "clip ✓"}
    assert (plain["priority"], plain["state"], plain["attempt"]) == (5, "pending", 0)
    assert plain["max_attempts"] == 20 and plain["idempotency_key"] is None

    custom = enqueue(
        roadie, db_url, "send_email", {"to": "a@example.com"},
        "--queue", "analytics", "--priority", "-7", "--delay", "30s",
        "--idempotency-key", "mail-1",
    )  # fmt: skip
    assert_job_json(custom)
    assert (custom["queue"], custom["priority"], custom["max_attempts"]) == ("analytics", -7, 3)
    assert custom["idempotency_key"] == "mail-1"
    waited = datetime.fromisoformat(custom["run_at"]) - datetime.fromisoformat(custom["created_at"])
    assert abs(waited.total_seconds() - 30) < 1

    again = enqueue(roadie, db_url, "send_email", {"to": "b@example.com"}, "--idempotency-key", "mail-1")  # fmt: skip
    assert again["id"] == custom["id"] and again["args"] == {"to": "a@example.com"}
    assert count_jobs(db_url) == 2


def test_enqueue_takes_the_app_from_roadie_app(roadie, db_url: str, monkeypatch) -> None:
    monkeypatch.setenv("ROADIE_APP", APP)
    run = roadie("enqueue", "send_email", "--args", '{"to": "x@y.z"}', "--database-url", db_url)
    assert run.code == 0, run.err
    assert "send_email on notifications" in run.out
    assert count_jobs(db_url) == 1


# -- jobs list / show --------------------------------------------------------------------------


def test_jobs_list_json_and_filters(roadie, db_url: str) -> None:
    first = enqueue(roadie, db_url, "publish_video", {"video_id": 1})
    second = enqueue(roadie, db_url, "send_email", {"to": "a@b.c"})
    third = enqueue(roadie, db_url, "publish_video", {"video_id": 3}, "--queue", "indexing")

    run = roadie("jobs", "list", "--database-url", db_url, "--json")
    assert run.code == 0 and run.err == ""
    jobs = run.json()
    assert isinstance(jobs, list)
    assert [job["id"] for job in jobs] == [third["id"], second["id"], first["id"]]
    for job in jobs:
        assert_job_json(job)
    assert jobs[2] == first  # the same shape and values as `enqueue --json`

    def ids(*filters: str) -> list[int]:
        run = roadie("jobs", "list", "--database-url", db_url, "--json", *filters)
        assert run.code == 0, run.err
        return [job["id"] for job in run.json()]

    assert ids("--queue", "notifications") == [second["id"]]
    assert ids("--task", "publish_video") == [third["id"], first["id"]]
    assert ids("--task", "publish_video", "--queue", "content") == [first["id"]]
    assert ids("--state", "pending", "--limit", "2") == [third["id"], second["id"]]
    assert ids("--state", "complete") == []
    assert ids("--queue", "segmentation") == []


def test_jobs_list_human_output(roadie, db_url: str) -> None:
    job = enqueue(roadie, db_url, "publish_video", {"video_id": 1})
    enqueue(roadie, db_url, "send_email", {"to": "a@b.c"})
    run = roadie("jobs", "list", "--database-url", db_url)
    assert run.code == 0 and run.err == ""
    line = next(line for line in run.out.splitlines() if "publish_video" in line)
    for fact in (str(job["id"]), "content", "pending", "0/20"):
        assert fact in line, (fact, line)
    assert "send_email" in run.out and "notifications" in run.out
    assert "2 jobs" in run.out


def test_jobs_show_json_of_a_pending_job(roadie, db_url: str) -> None:
    job = enqueue(roadie, db_url, "publish_video", {"video_id": 9}, "--idempotency-key", "v-9")
    run = roadie("jobs", "show", str(job["id"]), "--database-url", db_url, "--json")
    assert run.code == 0 and run.err == ""
    shown = run.json()
    assert_job_json(shown)
    assert shown["attempts"] == [] and shown["children"] == []
    assert {key: shown[key] for key in JOB_KEYS} == {key: job[key] for key in JOB_KEYS}


def test_worker_burst_then_list_show_and_workers(roadie, db_url: str) -> None:
    video = enqueue(roadie, db_url, "publish_video", {"video_id": 7, "title": "t"})
    mail = enqueue(roadie, db_url, "send_email", {"to": "a@b.c"})
    bounced = enqueue(roadie, db_url, "bounce", {"to": "bob"})
    delayed = enqueue(roadie, db_url, "send_email", {"to": "later@b.c"}, "--delay", "1h")

    run = roadie("worker", "--app", APP, "--database-url", db_url, "--burst", "--concurrency", "2")
    assert run.code == 0, run.err

    listed = {job["id"]: job for job in roadie("jobs", "list", "--database-url", db_url, "--json").json()}  # fmt: skip
    assert listed[video["id"]]["state"] == "complete"
    assert listed[mail["id"]]["state"] == "complete"
    assert listed[bounced["id"]]["state"] == "failed"
    assert listed[delayed["id"]]["state"] == "pending"  # burst does not wait for delayed jobs
    for job in listed.values():
        assert_job_json(job)

    shown = roadie("jobs", "show", str(video["id"]), "--database-url", db_url, "--json")
    assert shown.code == 0, shown.err
    done = shown.json()
    assert_job_json(done)
    assert done["result"] == {"video_id": 7, "title": "t"}
    assert done["progress"] == {"fraction": 0.5, "message": "probing"}
    assert done["attempt"] == 1 and done["locked_by"] is None and done["children"] == []
    [attempt] = done["attempts"]
    assert set(attempt) == ATTEMPT_KEYS
    assert attempt["attempt"] == 1 and attempt["outcome"] == "complete" and attempt["worker"]
    for key in ("started_at", "finished_at"):
        assert datetime.fromisoformat(attempt[key]).utcoffset() == timedelta(0)

    failed = roadie("jobs", "show", str(bounced["id"]), "--database-url", db_url, "--json").json()
    assert failed["failure"] == "permanent"
    assert failed["error"] == "mailbox [/var/mail/bob] is full [bold] :warning:"
    assert failed["attempts"][0]["outcome"] == "failed"
    assert "Permanent" in failed["attempts"][0]["traceback"]

    # Human output: the key facts, and an error's brackets printed as they are.
    human = roadie("jobs", "show", str(video["id"]), "--database-url", db_url)
    assert human.code == 0, human.err
    for fact in ("publish_video", "complete", "content", '"video_id": 7', "50% probing", "1 of 20"):
        assert fact in human.out, (fact, human.out)
    human = roadie("jobs", "show", str(bounced["id"]), "--database-url", db_url)
    assert human.code == 0, human.err
    assert "mailbox [/var/mail/bob] is full [bold] :warning:" in human.out
    assert "permanent" in human.out and "attempts" in human.out
    human = roadie("jobs", "list", "--database-url", db_url, "--state", "failed")
    assert human.code == 0, human.err
    assert (
        "mailbox [/var/mail/bob] is full [bold] :warning:" in human.out and "1 job\n" in human.out
    )

    workers = roadie("workers", "--database-url", db_url, "--json")
    assert workers.code == 0, workers.err
    [worker] = workers.json()
    assert worker["id"] == attempt["worker"]
    assert worker["queues"] == ["content", "notifications"] and worker["concurrency"] == 2
    assert worker["pid"] == os.getpid() and worker["stopped_at"] is not None
    human = roadie("workers", "--database-url", db_url)
    assert human.code == 0 and worker["id"] in human.out and "stopped" in human.out


def test_workers_on_an_empty_database(roadie, db_url: str) -> None:
    run = roadie("workers", "--database-url", db_url, "--json")
    assert run.code == 0 and run.json() == []
    assert roadie("workers", "--database-url", db_url).code == 0


# -- bad usage and bad input: exit 2, one line ----------------------------------------------


def test_unknown_job_id(roadie, db_url: str) -> None:
    run = roadie("jobs", "show", "123", "--database-url", db_url)
    assert_error(run, 2)
    assert run.err == "roadie: error: no job 123\n"
    assert roadie("jobs", "show", "123", "--json", "--database-url", db_url).err == run.err
    assert_error(roadie("jobs", "show", "--database-url", db_url, "--", "-4"), 2, "no job -4")
    huge = str(2**70)
    assert_error(roadie("jobs", "show", huge, "--database-url", db_url), 2, f"no job {huge}")
    assert_error(roadie("jobs", "show", "abc", "--database-url", db_url), 2)


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["publish_video", "--args", '{"video_id": 7'], "malformed JSON"),
        (["publish_video", "--args", "not json"], "malformed JSON"),
        (["publish_video", "--args", "[1, 2]"], "JSON object"),
        (["publish_video", "--args", '"text"'], "JSON object"),
        (["publish_video", "--args", "null"], "JSON object"),
        (["publish_video", "--args", '{"video_id": NaN}'], "NaN"),
        (["publish_video", "--args", '{"video_id": -Infinity}'], "NaN"),
        (["publish_video", "--args", '{"s": "\\ud800"}'], "surrogate"),
        (["no_such_task", "--args", "{}"], "unknown task 'no_such_task'"),
        (["publish_video", "--queue", "Content!"], "invalid queue name"),
        (["publish_video", "--queue", "q'; DROP TABLE roadie_jobs;--"], "invalid queue name"),
        (["publish_video", "--queue", ""], "invalid queue name"),
        (["publish_video", "--delay", "soon"], "bad delay"),
        (["publish_video", "--delay", "-5s"], "bad delay"),
        (["publish_video", "--delay", "1e9"], "bad delay"),
        (["publish_video", "--delay", "99999d"], "bad delay"),
        (["publish_video", "--priority", "5000"], "priority"),
        (["publish_video", "--priority", "high"], "priority"),
        (["publish_video", "--idempotency-key", ""], "idempotency"),
        (["publish_video", "--frobnicate"], "no such option"),
        (["publish_video", "--args", '{"video_id": 1}', "--args"], "unexpected extra argument"),
    ],
)
def test_refused_enqueue_writes_nothing(roadie, db_url: str, argv: list[str], reason: str) -> None:
    enqueue(roadie, db_url, "send_email", {"to": "a@b.c"})
    run = roadie("enqueue", *argv, "--app", APP, "--database-url", db_url)
    assert_error(run, 2, reason)
    assert run.out == ""
    assert count_jobs(db_url) == 1


def test_enqueue_without_an_app_is_refused(roadie, db_url: str) -> None:
    run = roadie("enqueue", "publish_video", "--args", "{}", "--database-url", db_url)
    assert_error(run, 2, "--app")
    for spec, reason in [
        ("tests.cli.sample_app", "MODULE:ATTR"),
        ("tests.cli.no_such_module:app", "cannot import"),
        ("tests.cli.sample_app:publish_video", "not a roadie App"),
        ("tests.cli.sample_app:nothing", "not a roadie App"),
    ]:
        run = roadie("enqueue", "publish_video", "--app", spec, "--database-url", db_url)
        assert_error(run, 2, reason)
    assert count_jobs(db_url) == 0


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/db", "sqlite://", "sqlite:///", "http://example.com", "", "None"],
)
def test_malformed_database_url(roadie, url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded default must not be used instead
    for argv in (
        ["jobs", "list"],
        ["migrate"],
        ["enqueue", "publish_video", "--args", '{"video_id": 1}', "--app", APP],
    ):
        assert_error(roadie(*argv, "--database-url", url), 2, "database URL")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["nosuchverb"],
        ["jobs", "list", "--state", "bogus"],
        ["jobs", "list", "--limit", "0"],
        ["jobs", "list", "--limit", "10001"],
        ["jobs", "list", "--queue", "Bad Queue"],
        ["jobs", "list", "--unknown"],
        ["jobs", "show"],
        ["enqueue"],
        ["worker", "--app", APP, "--queues", "a,,b", "--burst"],
        ["worker", "--app", APP, "--concurrency", "0", "--burst"],
        ["worker", "--app", APP, "--retention", "soon", "--burst"],
        ["worker", "--app", APP, "--retention", "10m", "--burst"],
        ["worker", "--burst"],
    ],
)
def test_bad_usage_is_one_line(roadie, db_url: str, argv: list[str]) -> None:
    assert_error(roadie(*argv, "--database-url", db_url), 2)


# -- operations that fail: exit 1, one line ----------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "list"],
        ["jobs", "show", "1"],
        ["migrate"],
        ["workers"],
        ["enqueue", "publish_video", "--args", '{"video_id": 1}', "--app", APP],
    ],
)
def test_unreachable_database(roadie, argv: list[str]) -> None:
    assert_error(roadie(*argv, "--database-url", UNREACHABLE_PG), 1)


def test_unmigrated_database(roadie, tmp_path: Path, fresh_pg: str) -> None:
    for url in (f"sqlite:///{tmp_path / 'empty.db'}", fresh_pg):
        for argv in (
            ["jobs", "list"],
            ["jobs", "show", "1"],
            ["workers"],
            ["enqueue", "publish_video", "--args", '{"video_id": 1}', "--app", APP],
        ):
            assert_error(roadie(*argv, "--database-url", url), 1, "roadie migrate")


# -- the real console script ---------------------------------------------------------------


def console(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROADIE_")}
    return subprocess.run(
        [ROADIE, *argv],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_console_script_end_to_end(db_url: str) -> None:
    env = {"ROADIE_APP": APP, "ROADIE_DATABASE_URL": db_url}
    done = console("migrate", **env)
    assert done.returncode == 0 and "up to date" in done.stdout, done.stderr
    done = console("enqueue", "publish_video", "--args", '{"video_id": 3}', "--json", **env)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert_job_json(job)
    done = console("worker", "--burst", "--log-level", "WARNING", **env)
    assert done.returncode == 0, done.stderr
    done = console("jobs", "show", str(job["id"]), "--json", **env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["state"] == "complete" and shown["result"] == {"video_id": 3, "title": ""}
    assert shown["attempts"][0]["outcome"] == "complete"


def test_console_script_errors_are_one_line(db_url: str) -> None:
    done = console("jobs", "show", "123", "--database-url", db_url)
    assert (done.returncode, done.stderr) == (2, "roadie: error: no job 123\n")
    done = console("enqueue", "publish_video", "--args", "{oops", "--app", APP, "--database-url", db_url)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("roadie: error: malformed JSON in --args")
    done = console("jobs", "list", "--database-url", UNREACHABLE_PG)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("roadie: error: ") and "Traceback" not in done.stderr
    assert count_jobs(db_url) == 0
