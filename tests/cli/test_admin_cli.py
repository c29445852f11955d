"""The administration verbs of `roadie`, driven in-process through `roadie.cli.main`.

Both backends (`db_url`). Jobs whose ages matter are written by an App whose clock is frozen two
hours in the past, while the command measures against the database's own clock: no sleeping.
Bad input gives exit 2, exactly one stderr line, and changes nothing.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roadie import App, FrozenClock, Permanent
from roadie.backends.base import WorkerInfo
from roadie.jobs import STATES, Fence
from tests.cli.running import Run, assert_error

APP = "tests.cli.sample_app:app"
ENTRY_KEYS = {"id", "queue", "task", "attempt", "worker"}
AUDIT_KEYS = {"id", "at", "actor", "action", "params", "job_ids", "count"}
WORKER_KEYS = {"id", "host", "pid", "queues", "concurrency", "started_at", "heartbeat_at"}
WORKER_KEYS |= {"stopped_at", "jobs", "state"}
TWO_HOURS = 7200.0
# How `span()` prints two hours, give or take three minutes.
TWO_HOURS_AGO = re.compile(r"\b(1h5[7-9]m|2h0[0-2]m)\b")


@pytest.fixture
def roadie(roadie, db_url: str):
    """Run `roadie ARGV... --database-url <the test's database>` in-process."""

    def run(*argv: Any) -> Run:
        return roadie(*[str(arg) for arg in argv], "--database-url", db_url)

    return run


def register(app: App) -> App:
    """The sample app's task names (so `roadie worker --app` can run what this app enqueues)."""

    @app.task(queue="content", priority=5)
    def publish_video(ctx, video_id: int = 0, title: str = "") -> None:
        if video_id < 0:
            ctx.spawn("send_email", to=f"child{video_id}")
            ctx.spawn("send_email", to=f"child{video_id - 1}")

    @app.task(queue="notifications", max_attempts=3)
    def send_email(ctx, to: str = "", subject: str = "hello") -> None: ...

    @app.task(queue="notifications")
    def bounce(ctx, to: str = "") -> None:
        raise Permanent(f"mailbox [/var/mail/{to}] is FULL")

    @app.task(queue="content", timeout="1m")
    def render(ctx) -> None: ...

    return app


@pytest.fixture
def app(make_app) -> App:
    return register(make_app())


@pytest.fixture
def past(make_app) -> App:
    """An App writing two hours in the past: what it claims has run for two hours by now."""
    return register(make_app(clock=FrozenClock(datetime.now(UTC) - timedelta(seconds=TWO_HOURS))))


def failed_jobs(app: App, n: int) -> list[int]:
    jobs = app.tasks["bounce"].enqueue_many([{"to": f"user{i}"} for i in range(n)])
    app.run_worker(queues=["notifications"], burst=True)
    assert all(app.get_job(job.id).state == "failed" for job in jobs)
    return [job.id for job in jobs]


def claim(app: App, worker: str, queue: str = "content", lease: float = 86400.0) -> Fence:
    [job] = app.backend.job_claim(worker, queue, 1, lease)
    return Fence(job.id, job.attempt, worker)


def line_of(out: str, job_id: int) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"│ {job_id} "))


# -- jobs list -----------------------------------------------------------------------------------


def test_jobs_list_filters(roadie, app: App) -> None:
    parent = app.tasks["publish_video"].enqueue(video_id=-1)
    app.run_worker(queues=["content"], burst=True)
    bounced = failed_jobs(app, 2)
    children = app.get_job(parent.id).children
    assert children is not None and len(children) == 2

    def ids(*filters: Any) -> list[int]:
        run = roadie("jobs", "list", "--json", *filters)
        assert run.code == 0 and run.err == "", run.err
        jobs = run.json()
        assert isinstance(jobs, list)
        return [job["id"] for job in jobs]

    assert ids("--parent", parent.id) == sorted((c.id for c in children), reverse=True)
    assert ids("--parent", bounced[0]) == []
    assert ids("--error", "mailbox [/VAR/mail/user1]") == [bounced[1]]
    assert ids("--error", "full", "--state", "failed") == bounced[::-1]
    assert ids("--review") == bounced[::-1]
    assert ids("--review", "--queue", "content") == []
    every = ids()
    assert len(every) == 5
    assert ids("--since", "1h") == every and ids("--until", "1h") == []
    assert ids("--since", "2999-01-01T00:00:00Z") == []
    assert ids("--until", "2999-01-01T00:00:00+02:00", "--task", "bounce") == bounced[::-1]
    assert ids("--before", every[1]) == every[2:]


def test_jobs_list_pages_with_a_hint(roadie, app: App) -> None:
    jobs = [job.id for job in app.tasks["send_email"].enqueue_many([{}] * 5)][::-1]
    first = roadie("jobs", "list", "--limit", 2)
    assert first.code == 0 and first.err == ""
    assert first.out.rstrip().endswith(f"next page: --before {jobs[1]}")
    assert "2 jobs" in first.out and str(jobs[0]) in first.out
    second = roadie("jobs", "list", "--limit", 2, "--before", jobs[1])
    assert f"next page: --before {jobs[3]}" in second.out
    assert line_of(second.out, jobs[2]) and line_of(second.out, jobs[3])
    last = roadie("jobs", "list", "--limit", 2, "--before", jobs[3])
    assert "1 job\n" in last.out and "next page" not in last.out
    assert line_of(last.out, jobs[4])
    as_json = roadie("jobs", "list", "--limit", 2, "--json")
    assert [job["id"] for job in as_json.json()] == jobs[:2]  # JSON stays a bare array


def test_jobs_list_running_shows_worker_lock_age_progress_and_stuck(
    roadie, past: App, app: App
) -> None:
    late = past.tasks["render"].enqueue()  # timeout 1m, running for 2 hours
    busy = past.tasks["publish_video"].enqueue(video_id=3)
    fence = claim(past, "w-busy")  # higher priority: claimed first
    assert fence.job_id == busy.id
    claim(past, "w-late")
    assert past.backend.job_progress(fence, '{"fraction": 0.5, "message": "probing"}')
    app.tasks["send_email"].enqueue()  # pending: not in the running view

    run = roadie("jobs", "list", "--state", "running")
    assert run.code == 0 and run.err == "", run.err
    assert "lock age" in run.out and "progress" in run.out and "2 jobs" in run.out
    row = line_of(run.out, late.id)
    assert "w-late" in row and "STUCK: past timeout" in row
    assert len(TWO_HOURS_AGO.findall(row)) == 2  # lock age and run time
    row = line_of(run.out, busy.id)
    assert "w-busy" in row and "█████░░░░░ 50% probing" in row and "STUCK" not in row
    assert len(TWO_HOURS_AGO.findall(row)) == 2

    listed = roadie("jobs", "list", "--state", "running", "--json").json()
    assert {job["id"]: job["stuck"] for job in listed} == {late.id: "past timeout", busy.id: None}
    assert {job["locked_by"] for job in listed} == {"w-late", "w-busy"}


# -- jobs show -----------------------------------------------------------------------------------


def test_jobs_show_a_running_job_timing_and_lock(roadie, past: App) -> None:
    job = past.tasks["render"].enqueue()
    claim(past, "w-old")
    shown = roadie("jobs", "show", job.id, "--json")
    assert shown.code == 0 and shown.err == ""
    data = shown.json()
    assert data["id"] == job.id and data["attempts"] == [] and data["children"] == []
    assert data["stuck"] == "past timeout" and data["locked_by"] == "w-old"
    timing = data["timing"]
    assert set(timing) == {"waited", "run_time", "lock_age"}
    assert timing["waited"] == 0.0  # claimed the moment it was due
    assert TWO_HOURS - 5 < timing["lock_age"] < TWO_HOURS + 120
    assert TWO_HOURS - 5 < timing["run_time"] < TWO_HOURS + 120

    human = roadie("jobs", "show", job.id)
    assert human.code == 0, human.err
    for fact in ("held by w-old for ", "expires", "past timeout"):
        assert fact in human.out, (fact, human.out)
    assert TWO_HOURS_AGO.search(human.out.split("held by w-old for ")[1][:8])
    assert TWO_HOURS_AGO.search(human.out.split("run time")[1][:16])


def test_jobs_show_review_note_args_history_and_timing(roadie, app: App) -> None:
    [job_id] = failed_jobs(app, 1)
    done = app.tasks["send_email"].enqueue(to="a")
    app.run_worker(queues=["notifications"], burst=True)
    data = roadie("jobs", "show", done.id, "--json").json()
    assert data["state"] == "complete" and data["timing"]["lock_age"] is None
    assert data["timing"]["waited"] >= 0 and data["timing"]["run_time"] >= 0

    assert roadie("jobs", "show", job_id).out.count("awaiting review") == 1
    assert roadie("jobs", "retry", job_id, "--args", '{"to": "fixed"}').code == 0
    app.run_worker(queues=["notifications"], burst=True)
    assert roadie("review", "resolve", job_id, "--note", "mailbox emptied").code == 0

    data = roadie("jobs", "show", job_id, "--json").json()
    assert data["args"] == {"to": "fixed"} and data["attempt"] == 2
    [old] = data["args_history"]
    assert old["args"] == {"to": "user0"} and old["attempt"] == 1
    assert datetime.fromisoformat(old["replaced_at"]).utcoffset() == timedelta(0)
    assert data["review_note"] == "mailbox emptied" and data["needs_review"] is False
    human = roadie("jobs", "show", job_id)
    for fact in ("earlier arguments", '{"to": "user0"}', "resolved", "mailbox emptied"):
        assert fact in human.out, (fact, human.out)
    assert "awaiting review" not in human.out


def show_facts(out: str) -> dict[str, str]:
    """`jobs show`'s facts, label to value: the lines under the heading, indented by two, the
    values in one column (where the queue's stands)."""
    lines = out.splitlines()[1:]
    column = len(lines[0]) - len(lines[0][2:].removeprefix("queue").lstrip())
    facts = {}
    for line in lines:
        if not line.startswith("  ") or line[2] == " ":
            break
        facts[line[2:column].rstrip()] = line[column:]
    return facts


def test_jobs_show_labels_what_a_pending_jobs_last_attempt_left(roadie, app: App) -> None:
    [job_id] = failed_jobs(app, 1)
    failed = show_facts(roadie("jobs", "show", job_id).out)
    assert failed["error"] == "mailbox [/var/mail/user0] is FULL"
    assert failed["started"] != "-" and failed["run time"] != "-"
    assert "last error" not in failed and "last attempt started" not in failed

    assert roadie("jobs", "retry", job_id).code == 0  # pending again, after attempt 1
    run = roadie("jobs", "show", job_id)
    assert run.code == 0 and run.err == "", run.err
    assert "(pending)" in run.out.splitlines()[0]
    shown = show_facts(run.out)
    for plain in ("error", "started", "run time"):
        assert plain not in shown, (plain, run.out)  # nothing left unlabelled
    assert shown["last error"] == failed["error"]
    assert shown["last attempt started"] == failed["started"]
    assert shown["last attempt ran"] == failed["run time"]
    assert shown["attempt"].startswith("1 of ") and shown["finished"] == "-"
    assert shown["queue"] == "notifications"  # the wider labels keep one column

    # A job that never ran has nothing to label.
    fresh = show_facts(roadie("jobs", "show", app.tasks["send_email"].enqueue().id).out)
    assert fresh["error"] == "-" and fresh["started"] == "-" and fresh["run time"] == "-"
    assert "last error" not in fresh and "last attempt ran" not in fresh


# -- retry, cancel, purge ------------------------------------------------------------------------


def test_retry_by_ids_with_dry_run_args_and_json(roadie, app: App) -> None:
    first, second = failed_jobs(app, 2)
    done = app.tasks["send_email"].enqueue()
    app.run_worker(queues=["notifications"], burst=True)

    dry = roadie("jobs", "retry", first, second, done.id, "--dry-run")
    assert dry.code == 0 and dry.err == ""
    assert dry.out.splitlines() == [
        f"would retry 2 jobs: {first}, {second}",
        f"left 1 job not failed or cancelled: {done.id}",
    ]
    assert app.get_job(first).state == "failed" and app.get_job(second).state == "failed"
    assert app.admin.audit() == []  # dry runs are not audited

    run = roadie("jobs", "retry", first, "--args", '{"to": "alice"}', "--json")
    assert run.code == 0 and run.err == ""
    report = run.json()
    assert report == {
        "action": "retry",
        "dry_run": False,
        "count": 1,
        "jobs": [{"id": first, "queue": "notifications", "task": "bounce", "attempt": 1,
                  "worker": None}],
        "skipped": [],
    }  # fmt: skip
    retried = app.get_job(first)
    assert retried.state == "pending" and retried.args == {"to": "alice"}
    assert retried.args_history[0]["args"] == {"to": "user0"}

    run = roadie("jobs", "retry", second)
    assert run.out == f"retried 1 job: {second}\n"
    app.run_worker(queues=["notifications"], burst=True)
    assert app.get_job(second).attempt == 2  # a new attempt, never a reset one
    [entry, _] = app.admin.audit(action="jobs.retry")
    assert (entry.count, entry.job_ids, entry.actor) == (1, [second], getpass.getuser())


def test_retry_failed_by_queue_and_task(roadie, app: App) -> None:
    bounced = failed_jobs(app, 3)
    render = app.tasks["render"].enqueue()
    fence = claim(app, "w1")
    assert app.backend.job_fail(fence, "permanent", "failed", "boom", None)

    dry = roadie("jobs", "retry", "--failed", "--queue", "notifications", "--dry-run")
    assert dry.out.startswith("would retry 3 jobs: ")
    assert {int(x) for x in dry.out.split(": ")[1].split(", ")} == set(bounced)
    assert len(app.admin.list_jobs(state="failed")) == 4
    run = roadie("jobs", "retry", "--failed", "--task", "render", "--json")
    report = run.json()
    assert (report["count"], [job["id"] for job in report["jobs"]]) == (1, [render.id])
    assert set(report["jobs"][0]) == ENTRY_KEYS and report["skipped"] == []
    assert roadie("jobs", "retry", "--failed", "--queue", "indexing").out == "retried 0 jobs\n"
    run = roadie("jobs", "retry", "--failed")
    assert run.out.startswith("retried 3 jobs: ")
    assert app.admin.list_jobs(state="failed") == []


def test_cancel_with_dry_run_and_json(roadie, app: App) -> None:
    [ended] = failed_jobs(app, 1)
    pending = [job.id for job in app.tasks["send_email"].enqueue_many([{}] * 2)]
    running = app.tasks["publish_video"].enqueue()
    fence = claim(app, "w-run")

    dry = roadie("jobs", "cancel", *pending, ended, "--dry-run")
    assert dry.out.splitlines() == [
        f"would cancel 2 jobs: {pending[0]}, {pending[1]}",
        f"left 1 job already ended: {ended}",
    ]
    assert all(app.get_job(i).state == "pending" for i in pending)

    run = roadie("jobs", "cancel", running.id, ended, "--json")
    assert run.code == 0 and run.err == ""
    assert run.json() == {
        "action": "cancel",
        "dry_run": False,
        "count": 1,
        "jobs": [{"id": running.id, "queue": "content", "task": "publish_video", "attempt": 1,
                  "worker": "w-run"}],
        "skipped": [ended],
    }  # fmt: skip
    assert app.backend.job_complete(fence, "null") is False  # the worker's result is refused
    run = roadie("jobs", "cancel", *pending)
    assert run.out == f"cancelled 2 jobs: {pending[0]}, {pending[1]}\n"
    assert {app.get_job(i).state for i in [*pending, running.id]} == {"cancelled"}


def test_purge_with_dry_run_and_json(roadie, app: App) -> None:
    jobs = app.tasks["send_email"].enqueue_many([{}] * 3)
    app.tasks["publish_video"].enqueue()
    app.run_worker(queues=["notifications", "content"], burst=True)
    failed_jobs(app, 1)

    dry = roadie("jobs", "purge", "--state", "complete", "--older-than", "0s", "--dry-run")
    assert dry.out == "would purge 4 complete jobs finished over 0s ago\n"
    assert len(app.admin.list_jobs()) == 5
    assert roadie("jobs", "purge", "--state", "complete", "--older-than", "1d").out.startswith(
        "purged 0 complete jobs"
    )
    run = roadie(
        "jobs", "purge", "--state", "complete", "--older-than", "0s", "--queue", "notifications",
        "--json",
    )  # fmt: skip
    assert run.json() == {
        "action": "purge",
        "dry_run": False,
        "count": 3,
        "state": "complete",
        "older_than": 0.0,
        "queue": "notifications",
    }
    assert all(app.get_job(job.id) is None for job in jobs)
    run = roadie("jobs", "purge", "--state", "failed", "--older-than", "0s")
    assert run.out == "purged 1 failed job finished over 0s ago\n"
    assert [job.state for job in app.admin.list_jobs()] == ["complete"]
    [entry] = app.admin.audit(action="jobs.purge", limit=1)
    assert entry.count == 1 and entry.params["state"] == "failed"


# -- admin expire-stuck and clear-locks ----------------------------------------------------------


def test_expire_stuck_retry_and_fail(roadie, past: App, app: App) -> None:
    stuck = past.tasks["publish_video"].enqueue()
    other = past.tasks["render"].enqueue()
    old_fence = claim(past, "w-stopped")
    claim(past, "w-other")
    fresh = app.tasks["publish_video"].enqueue()
    claim(app, "w-fresh")

    dry = roadie("admin", "expire-stuck", "--older-than", "1h", "--dry-run")
    assert dry.code == 0 and dry.err == ""
    lines = dry.out.splitlines()
    assert lines[0] == "would expire 2 jobs running over 1h (retried):"
    assert f"  {stuck.id}  publish_video  content  worker w-stopped" in lines
    assert f"  {other.id}  render  content  worker w-other" in lines
    assert {job.state for job in app.admin.list_jobs()} == {"running"}

    run = roadie("admin", "expire-stuck", "--older-than", "1h", "--queue", "indexing")
    assert run.out == "expired 0 jobs running over 1h (retried)\n"
    assert roadie(
        "admin", "expire-stuck", "--older-than", "1h", "--fail", "--dry-run"
    ).out.startswith("would expire 2 jobs running over 1h (failed):")
    run = roadie("admin", "expire-stuck", "--older-than", "1h", "--json")
    report = run.json()
    assert (report["action"], report["dry_run"], report["count"]) == ("expire", False, 2)
    assert {(e["id"], e["worker"]) for e in report["jobs"]} == {
        (stuck.id, "w-stopped"),
        (other.id, "w-other"),
    }
    assert all(set(e) == ENTRY_KEYS for e in report["jobs"])
    after = app.get_job(stuck.id)
    assert after.state == "pending" and after.attempts[-1]["outcome"] == "expired"
    assert app.get_job(fresh.id).state == "running"
    assert past.backend.job_complete(old_fence, "null") is False  # the late worker is refused

    again = claim(app, "w-new")  # the retried job runs again as a new attempt
    assert (again.job_id, again.attempt) == (stuck.id, 2)
    job = past.tasks["render"].enqueue()  # due two hours ago, unlike the retried `other`
    claim(past, "w-slow")
    run = roadie("admin", "expire-stuck", "--older-than", "1h", "--fail")
    assert run.out.splitlines()[0] == "expired 1 job running over 1h (failed):"
    assert f"  {job.id}  render  content  worker w-slow" in run.out
    failed = app.get_job(job.id)
    assert (failed.state, failed.failure) == ("failed", "expired")


def test_clear_locks_releases_dead_workers_jobs(roadie, past: App, app: App) -> None:
    past.backend.worker_heartbeat(WorkerInfo("w-dead", "host-a", 11, ["content"], 2))
    app.backend.worker_heartbeat(WorkerInfo("w-live", "host-b", 12, ["content"], 2))
    dead = past.tasks["publish_video"].enqueue()
    dead_fence = claim(past, "w-dead")  # its lease has a day left: only the silence counts
    live = app.tasks["publish_video"].enqueue()
    claim(app, "w-live")

    assert roadie("admin", "clear-locks", "--dead-for", "3h").out == (
        "released 0 jobs from dead workers' locks\n"
    )
    dry = roadie("admin", "clear-locks", "--dry-run")
    assert dry.out.splitlines() == [
        "would release 1 job from dead workers' locks:",
        f"  {dead.id}  publish_video  content  worker w-dead",
    ]
    assert app.get_job(dead.id).state == "running"

    run = roadie("admin", "clear-locks", "--dead-for", "60s", "--json")
    assert run.code == 0 and run.err == ""
    assert run.json() == {
        "action": "release",
        "dry_run": False,
        "count": 1,
        "jobs": [{"id": dead.id, "queue": "content", "task": "publish_video", "attempt": 1,
                  "worker": "w-dead"}],
        "skipped": [],
    }  # fmt: skip
    after = app.get_job(dead.id)
    assert (after.state, after.error) == ("pending", "worker lost")
    assert app.get_job(live.id).state == "running"
    assert past.backend.job_complete(dead_fence, "null") is False


# -- queues --------------------------------------------------------------------------------------


def test_queues_pause_and_resume_with_a_worker(roadie, app: App) -> None:
    video = app.tasks["publish_video"].enqueue(video_id=1)
    mail = app.tasks["send_email"].enqueue(to="a")

    run = roadie("queues", "pause", "content")
    assert run.code == 0 and run.err == ""
    assert run.out.startswith("paused queue content")
    queues = roadie("queues", "--json").json()
    assert [set(entry) for entry in queues] == [{"queue", "paused", "depth"}] * len(queues)
    by_name = {entry["queue"]: entry for entry in queues}
    assert by_name["content"]["paused"] is True and by_name["notifications"]["paused"] is False
    assert set(by_name["content"]["depth"]) == set(STATES)
    assert by_name["content"]["depth"]["pending"] == 1
    human = roadie("queues")
    assert "PAUSED" in next(line for line in human.out.splitlines() if "content" in line)

    assert roadie("worker", "--app", APP, "--burst").code == 0
    assert app.get_job(mail.id).state == "complete"
    assert app.get_job(video.id).state == "pending"  # a paused queue is not claimed

    run = roadie("queues", "resume", "content")
    assert run.out == "resumed queue content\n"
    assert roadie("worker", "--app", APP, "--burst").code == 0
    assert app.get_job(video.id).state == "complete"
    by_name = {entry["queue"]: entry for entry in roadie("queues", "--json").json()}
    assert by_name["content"]["paused"] is False
    assert by_name["content"]["depth"]["complete"] == 1
    actions = [entry.action for entry in app.admin.audit()]
    assert actions == ["queues.resume", "queues.pause"]


# -- review and audit ----------------------------------------------------------------------------


def test_review_list_and_resolve(roadie, app: App) -> None:
    jobs = failed_jobs(app, 3)
    listed = roadie("review", "list", "--json")
    assert listed.code == 0 and listed.err == ""
    assert [job["id"] for job in listed.json()] == jobs[::-1]
    assert all(job["needs_review"] and job["failure"] == "permanent" for job in listed.json())
    assert roadie("review", "list", "--queue", "content", "--json").json() == []
    page = roadie("review", "list", "--limit", 2, "--task", "bounce")
    assert "2 jobs awaiting review" in page.out and f"next page: --before {jobs[1]}" in page.out
    assert "mailbox [/var/mail/user2] is FULL" in line_of(page.out, jobs[2])
    rest = roadie("review", "list", "--before", jobs[1], "--json")
    assert [job["id"] for job in rest.json()] == [jobs[0]]

    run = roadie("review", "resolve", jobs[0], jobs[1], "--note", "told the users")
    assert run.code == 0 and run.err == ""
    assert run.out == f"resolved 2 jobs: {jobs[0]}, {jobs[1]}\n"
    assert [job["id"] for job in roadie("review", "list", "--json").json()] == [jobs[2]]
    resolved = app.get_job(jobs[0])
    assert resolved.state == "failed" and resolved.review_note == "told the users"
    again = roadie("review", "resolve", jobs[0], "--note", "again", "--json").json()
    assert (again["count"], again["skipped"]) == (0, [jobs[0]])


def test_audit_lists_actions_with_paging(roadie, app: App) -> None:
    jobs = failed_jobs(app, 2)
    roadie("jobs", "retry", *jobs)
    roadie("queues", "pause", "analytics")
    roadie("review", "resolve", jobs[0], "--note", "n")  # retried: not awaiting review any more

    entries = roadie("audit", "--json").json()
    assert [entry["action"] for entry in entries] == [
        "review.resolve",
        "queues.pause",
        "jobs.retry",
    ]
    for entry in entries:
        assert set(entry) == AUDIT_KEYS and entry["actor"] == getpass.getuser()
        assert datetime.fromisoformat(entry["at"]).utcoffset() == timedelta(0)
    resolve, pause, retry = entries
    assert (retry["count"], sorted(retry["job_ids"]), retry["params"]) == (2, jobs, {"ids": jobs})
    assert (pause["count"], pause["params"]) == (1, {"queue": "analytics"})
    assert (resolve["count"], resolve["job_ids"]) == (0, [])
    only = roadie("audit", "--action", "jobs.retry", "--json").json()
    assert [entry["id"] for entry in only] == [retry["id"]]
    assert roadie("audit", "--actor", "nobody-at-all", "--json").json() == []
    assert roadie("audit", "--before", pause["id"], "--json").json() == [retry]
    human = roadie("audit", "--limit", 2)
    assert "queues.pause" in human.out and "jobs.retry" not in human.out
    assert human.out.rstrip().endswith(f"next page: --before {pause['id']}")
    roadie("queues", "resume", "analytics")


# -- workers -------------------------------------------------------------------------------------


def test_workers_state_and_jobs_in_hand(roadie, past: App, app: App) -> None:
    app.backend.worker_heartbeat(WorkerInfo("w-alive", "host-a", 101, ["content", "indexing"], 4))
    past.backend.worker_heartbeat(WorkerInfo("w-dead", "host-b", 102, ["content"], 2))
    app.backend.worker_heartbeat(WorkerInfo("w-stopped", "host-c", 103, ["content"], 1))
    app.backend.worker_stop("w-stopped")
    app.tasks["publish_video"].enqueue_many([{}] * 2)
    claim(app, "w-alive")
    claim(app, "w-alive")

    run = roadie("workers", "--json")
    assert run.code == 0 and run.err == ""
    workers = {w["id"]: w for w in run.json()}
    assert all(set(w) == WORKER_KEYS for w in workers.values())
    assert {k: (w["state"], w["jobs"]) for k, w in workers.items()} == {
        "w-alive": ("alive", 2),
        "w-dead": ("dead", 0),
        "w-stopped": ("stopped", 0),
    }
    assert workers["w-alive"]["queues"] == ["content", "indexing"]
    assert workers["w-alive"]["concurrency"] == 4 and workers["w-alive"]["pid"] == 101
    human = roadie("workers")
    assert "jobs" in human.out and "last heartbeat" in human.out
    row = next(line for line in human.out.splitlines() if "w-alive" in line)
    for fact in ("host-a", "101", "content,indexing", "alive"):
        assert fact in row, (fact, row)
    row = next(line for line in human.out.splitlines() if "w-dead" in line)
    assert "dead" in row and TWO_HOURS_AGO.search(row) and " ago" in row


# -- bad input: exit 2, one line, nothing changed ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["jobs", "retry", "999"], "no job 999"),
        (["jobs", "retry", "{failed}", "999"], "no job 999"),
        (["jobs", "cancel", "{pending}", "999"], "no job 999"),
        (["review", "resolve", "{failed}", "999", "--note", "x"], "no job 999"),
        (["jobs", "retry", "{failed}", "--failed"], "not both"),
        (["jobs", "retry"], "--failed"),
        (["jobs", "retry", "{failed}", "--args", '{"to": '], "malformed JSON"),
        (["jobs", "retry", "{failed}", "--args", "[1, 2]"], "JSON object"),
        (["jobs", "retry", "{failed}", "--args", '{"to": NaN}'], "NaN"),
        (["jobs", "retry", "--failed", "--args", "{}"], "--args"),
        (["jobs", "retry", "{failed}", "--queue", "notifications"], "--failed"),
        (["jobs", "retry", "--failed", "--queue", "Bad!"], "invalid queue name"),
        (["jobs", "retry", "--failed", "--task", "no spaces"], "invalid task name"),
        (["jobs", "retry", "seven"], "seven"),
        (["jobs", "cancel"], "missing argument"),
        (["jobs", "purge", "--state", "complete", "--older-than", "soon"], "--older-than"),
        (["jobs", "purge", "--state", "running", "--older-than", "1d"], "cannot purge"),
        (["jobs", "purge", "--older-than", "1d"], "--state"),
        (["jobs", "purge", "--state", "failed", "--older-than", "0s", "--queue", "A B"], "queue"),
        (["admin", "expire-stuck", "--older-than", "-5m"], "--older-than"),
        (["admin", "expire-stuck"], "--older-than"),
        (["admin", "expire-stuck", "--older-than", "0s", "--queue", "NO"], "invalid queue name"),
        (["admin", "clear-locks", "--dead-for", "forever"], "--dead-for"),
        (["queues", "pause", "Bad!"], "invalid queue name"),
        (["queues", "resume", ""], "invalid queue name"),
        (["queues", "pause"], "missing argument"),
        (["queues", "drain", "content"], "no such command"),
        (["review", "resolve", "{failed}"], "--note"),
        (["review", "resolve", "{failed}", "--note", "  "], "--note"),
        (["review", "list", "--queue", "Bad!"], "invalid queue name"),
        (["review", "list", "--limit", "0"], "limit"),
        (["audit", "--limit", "10001"], "limit"),
        (["audit", "--before", "abc"], "abc"),
        (["jobs", "list", "--since", "yesterday"], "--since"),
        (["jobs", "list", "--until", "2030-01-01T00:00:00"], "time zone"),
        (["jobs", "list", "--since", "2030-02-30T00:00:00Z"], "ISO 8601"),
        (["jobs", "list", "--before", "0"], "before id"),
        (["jobs", "list", "--parent", "x"], "x"),
        (["jobs", "list", "--error", "e" * 1001], "error filter"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    roadie, app: App, argv: list[str], reason: str
) -> None:
    [failed] = failed_jobs(app, 1)
    pending = app.tasks["send_email"].enqueue()
    before = app.admin.list_jobs()
    argv = [
        arg.replace("{failed}", str(failed)).replace("{pending}", str(pending.id)) for arg in argv
    ]
    run = roadie(*argv)
    assert_error(run, 2, reason)
    assert run.out == ""
    assert app.admin.list_jobs() == before
    assert app.admin.audit() == []
    assert not any(entry["paused"] for entry in app.admin.queues())
