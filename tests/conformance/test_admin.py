"""The admin layer on both backends, with a frozen clock: no sleeping.

Filters and paging, cancel/retry/purge with their counts and dry runs, pausing queues, the review
list, the audit log, clear-locks and expire-stuck (fenced against the worker that still holds a
job), and the workers' states.
"""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta

import pytest

from roadie import App, FrozenClock, InvalidInput, Permanent
from roadie.backends.base import WorkerInfo
from roadie.jobs import Fence, Job


@pytest.fixture
def app(frozen_app: App) -> App:
    @frozen_app.task(queue="content")
    def transcode(ctx, n: int = 0) -> int:
        return n

    @frozen_app.task(queue="notifications", max_attempts=3)
    def send(ctx, to: str = "") -> None:
        raise Permanent(f"mailbox {to} UNREACHABLE")

    @frozen_app.task(queue="content", timeout="1m")
    def publish(ctx, n: int = 0) -> None:
        ctx.spawn("index", n=n)
        ctx.spawn("index", n=n + 1)

    @frozen_app.task(queue="indexing")
    def index(ctx, n: int = 0) -> None: ...

    return frozen_app


def claim(app: App, worker: str, queue: str = "content", lease: float = 30.0) -> Fence:
    [job] = app.backend.job_claim(worker, queue, 1, lease)
    return Fence(job.id, job.attempt, worker)


def ids(jobs: list[Job]) -> list[int]:
    return [job.id for job in jobs]


def heartbeat(app: App, worker: str, queues: tuple[str, ...] = ("content",)) -> None:
    app.backend.worker_heartbeat(WorkerInfo(worker, "host-a", 4242, list(queues), 2))


# -- history -------------------------------------------------------------------------------------


def test_list_filters_one_by_one_and_together(app: App, clock: FrozenClock) -> None:
    t0 = clock.now()
    early = app.tasks["transcode"].enqueue(n=1)
    clock.advance(3600)
    parent = app.tasks["publish"].enqueue(n=10)
    app.run_worker(queues=["content"], burst=True)
    clock.advance(600)
    bounced = app.tasks["send"].enqueue(to="bob")
    other = app.tasks["send"].enqueue(to="eve")
    app.run_worker(queues=["notifications"], burst=True)
    admin = app.admin
    children = admin.get_job(parent.id).children
    assert children is not None and len(children) == 2
    every = admin.list_jobs()
    assert ids(every) == sorted(ids(every), reverse=True) and len(every) == 6

    assert ids(admin.list_jobs(parent_id=parent.id)) == sorted(ids(children), reverse=True)
    assert admin.list_jobs(parent_id=early.id) == []
    assert ids(admin.list_jobs(state="failed")) == [other.id, bounced.id]
    assert ids(admin.list_jobs(queue="indexing")) == sorted(ids(children), reverse=True)
    assert ids(admin.list_jobs(task="transcode")) == [early.id]
    assert ids(admin.list_jobs(error="unreachable")) == [other.id, bounced.id]  # any case
    assert ids(admin.list_jobs(error="Mailbox BOB")) == [bounced.id]
    assert admin.list_jobs(error="no such text") == []
    assert ids(admin.list_jobs(needs_review=True)) == [other.id, bounced.id]
    assert early.id in ids(admin.list_jobs(needs_review=False))
    assert bounced.id not in ids(admin.list_jobs(needs_review=False))

    # Created since/until: a duration means that long before the database's now (t0 + 70m).
    hour = t0 + timedelta(hours=1)
    assert ids(admin.list_jobs(since="5m")) == [other.id, bounced.id]
    assert ids(admin.list_jobs(since="30m")) == [
        other.id,
        bounced.id,
        *reversed(ids(children)),
        parent.id,
    ]
    assert ids(admin.list_jobs(until="65m")) == [early.id]
    assert admin.list_jobs(since=hour, until=hour) == []
    at_hour = admin.list_jobs(since=hour.isoformat(), until=(hour + timedelta(minutes=5)))
    assert ids(at_hour) == sorted([parent.id, *ids(children)], reverse=True)
    assert ids(admin.list_jobs(since="2030-01-01T00:00:00Z", until=hour)) == [early.id]
    together = admin.list_jobs(state="failed", queue="notifications", error="eve", since="1h")
    assert ids(together) == [other.id]


def test_paging_with_before_id_visits_every_job_once(app: App) -> None:
    jobs = app.tasks["transcode"].enqueue_many([{"n": i} for i in range(7)])
    seen: list[int] = []
    before = None
    while page := app.admin.list_jobs(limit=3, before_id=before):
        assert len(page) <= 3
        seen.extend(ids(page))
        before = page[-1].id
    assert seen == sorted(ids(jobs), reverse=True)
    assert ids(app.admin.list_jobs(before_id=jobs[2].id)) == [jobs[1].id, jobs[0].id]


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        ({"state": "done"}, "unknown state"),
        ({"queue": "Bad Queue"}, "invalid queue name"),
        ({"task": "no spaces"}, "invalid task name"),
        ({"since": "2030-01-01T00:00:00"}, "time zone"),
        ({"until": "2030-13-01T00:00:00Z"}, "ISO 8601"),
        ({"since": "soon"}, "--since"),
        ({"until": "-5m"}, "--until"),
        ({"before_id": 0}, "before id"),
        ({"parent_id": -3}, "parent id"),
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"error": "x" * 1001}, "error filter"),
    ],
)
def test_bad_filters_are_refused(app: App, filters: dict, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        app.admin.list_jobs(**filters)


def test_running_jobs_are_marked_stuck_against_the_database_clock(
    app: App, clock: FrozenClock
) -> None:
    slow = app.tasks["publish"].enqueue()  # timeout 1m
    lost = app.tasks["transcode"].enqueue()
    fine = app.tasks["transcode"].enqueue()
    claim(app, "w1", lease=3600)
    clock.advance(1)
    claim(app, "w1", lease=30)
    clock.advance(60)
    claim(app, "w1", lease=3600)
    by_id = {job.id: job for job in app.admin.active_jobs()}
    assert by_id[slow.id].stuck == "past timeout"
    assert by_id[lost.id].stuck == "lease expired"
    assert by_id[fine.id].stuck is None
    assert ids(app.admin.active_jobs()) == [slow.id, lost.id, fine.id]  # oldest first
    assert app.admin.get_job(slow.id).stuck == "past timeout"
    assert app.admin.now() == clock.now()


def test_get_job_of_an_unknown_id(app: App) -> None:
    assert app.admin.find_job(404) is None
    with pytest.raises(InvalidInput, match="no job 404"):
        app.admin.get_job(404)


# -- cancel, retry, purge --------------------------------------------------------------------


def test_cancel_counts_and_dry_run(app: App) -> None:
    pending = app.tasks["transcode"].enqueue(n=1)
    running = app.tasks["transcode"].enqueue(n=2)
    done = app.tasks["transcode"].enqueue(n=3)
    fence = claim(app, "w1")  # pending.id is claimed first: the oldest
    assert fence.job_id == pending.id
    fence = claim(app, "w1")
    claim(app, "w1")
    assert app.backend.job_complete(Fence(done.id, 1, "w1"), "3")
    before = app.admin.list_jobs()

    would = app.admin.cancel([running.id, done.id], dry_run=True)
    assert ids(would) == [running.id]
    assert app.admin.list_jobs() == before  # nothing changed
    with pytest.raises(InvalidInput, match="no job 999"):
        app.admin.cancel([running.id, 999])
    assert app.admin.list_jobs() == before

    cancelled = app.admin.cancel([running.id, done.id])
    assert ids(cancelled) == [running.id]
    after = app.get_job(running.id)
    assert after.state == "cancelled" and after.locked_by is None
    assert after.attempts[-1]["outcome"] == "cancelled" and after.attempts[-1]["worker"] == "w1"
    assert app.backend.job_complete(fence, "2") is False  # its worker's result is refused
    assert app.get_job(running.id).state == "cancelled"
    assert app.get_job(done.id).state == "complete"


def test_retry_starts_a_new_attempt_and_keeps_replaced_args(app: App) -> None:
    send = app.tasks["send"]
    job = send.enqueue(to="bob")
    app.run_worker(queues=["notifications"], burst=True)
    failed = app.get_job(job.id)
    assert (failed.state, failed.attempt, failed.needs_review) == ("failed", 1, True)

    assert ids(app.admin.retry([job.id], dry_run=True)) == [job.id]
    assert app.get_job(job.id) == failed  # a dry run changes nothing

    [retried] = app.admin.retry([job.id], args={"to": "alice"})
    assert (retried.state, retried.attempt, retried.max_attempts) == ("pending", 1, 1 + 3)
    assert retried.args == {"to": "alice"} and not retried.needs_review
    [old] = retried.args_history
    assert old["args"] == {"to": "bob"} and old["attempt"] == 1
    assert isinstance(old["replaced_at"], datetime)

    app.run_worker(queues=["notifications"], burst=True)
    again = app.get_job(job.id)
    assert (again.state, again.attempt) == ("failed", 2)  # numbers keep counting
    assert [a["attempt"] for a in again.attempts] == [1, 2]
    assert again.error == "mailbox alice UNREACHABLE"
    [retried] = app.admin.retry([job.id])
    assert retried.args == {"to": "alice"} and len(retried.args_history) == 1
    assert retried.max_attempts == 2 + 3

    # Only failed or cancelled jobs are retried; an unknown id refuses the whole call.
    assert app.admin.retry([job.id]) == []
    with pytest.raises(InvalidInput, match="no job 12345"):
        app.admin.retry([job.id, 12345])
    with pytest.raises(InvalidInput, match="NaN"):
        app.admin.retry([job.id], args={"x": float("nan")})


def test_retry_failed_by_queue_and_task(app: App) -> None:
    bounced = app.tasks["send"].enqueue_many([{"to": f"u{i}"} for i in range(3)])
    app.run_worker(queues=["notifications"], burst=True)
    other = app.tasks["transcode"].enqueue()
    fence = claim(app, "w1")
    assert app.backend.job_fail(fence, "permanent", "failed", "boom", None)
    assert len(app.admin.list_jobs(state="failed")) == 4

    would = app.admin.retry_failed(queue="notifications", dry_run=True)
    assert sorted(ids(would)) == ids(bounced)
    assert len(app.admin.list_jobs(state="failed")) == 4
    assert ids(app.admin.retry_failed(task="transcode")) == [other.id]
    assert app.admin.retry_failed(queue="indexing") == []
    retried = app.admin.retry_failed(queue="notifications", task="send")
    assert sorted(ids(retried)) == ids(bounced)
    assert app.admin.list_jobs(state="failed") == []
    assert app.admin.retry_failed() == []


def test_purge_counts_from_finished_at(app: App, clock: FrozenClock) -> None:
    transcode = app.tasks["transcode"]
    old = transcode.enqueue(n=1)
    late = transcode.options(delay="2d").enqueue(n=2)  # created now, finished two days later
    app.run_worker(queues=["content"], burst=True)
    failed = app.tasks["send"].enqueue(to="x")
    app.run_worker(queues=["notifications"], burst=True)
    clock.advance(2 * 86400)
    app.run_worker(queues=["content"], burst=True)
    clock.advance(3600)
    assert app.get_job(late.id).state == "complete"

    assert app.admin.purge("complete", "1d", dry_run=True) == 1
    assert app.admin.purge("complete", "1d", queue="indexing") == 0
    assert len(app.admin.list_jobs()) == 3
    assert app.admin.purge("complete", "1d") == 1
    assert app.get_job(old.id) is None and app.get_job(late.id) is not None
    assert app.admin.purge("complete", "1d") == 0
    assert app.admin.purge("failed", "30m", queue="notifications") == 1
    assert app.get_job(failed.id) is None
    for state in ("pending", "running", "waiting", "nonsense"):
        with pytest.raises(InvalidInput, match="cannot purge"):
            app.admin.purge(state, "1d")
    with pytest.raises(InvalidInput, match="--older-than"):
        app.admin.purge("complete", "a while")
    assert ids(app.admin.list_jobs()) == [late.id]


# -- queues ------------------------------------------------------------------------------------


def test_a_paused_queue_is_not_claimed_while_others_run(app: App) -> None:
    waiting = app.tasks["transcode"].enqueue(n=1)
    mail = app.tasks["send"].enqueue(to="a")
    app.admin.pause("content")
    later = app.tasks["transcode"].enqueue(n=2)  # enqueue still works
    assert app.run_worker(queues=["content", "notifications"], burst=True) == 0
    assert app.get_job(mail.id).state == "failed"
    assert app.get_job(waiting.id).state == "pending" and app.get_job(later.id).state == "pending"
    assert app.backend.job_claim("w1", "content", 10, 30.0) == []
    queues = {entry["queue"]: entry for entry in app.admin.queues()}
    assert queues["content"]["paused"] is True and queues["content"]["depth"]["pending"] == 2
    assert queues["notifications"] == {
        "queue": "notifications",
        "paused": False,
        "depth": {
            "pending": 0, "running": 0, "waiting": 0, "complete": 0, "failed": 1, "cancelled": 0,
        },
    }  # fmt: skip
    assert "indexing" in queues  # a queue the app's tasks use, with nothing in it yet

    app.admin.resume("content")
    assert app.run_worker(queues=["content"], burst=True) == 0
    assert app.get_job(waiting.id).state == "complete" and app.get_job(later.id).state == "complete"
    assert {e["queue"]: e["paused"] for e in app.admin.queues()}["content"] is False
    with pytest.raises(InvalidInput, match="invalid queue name"):
        app.admin.pause("Content!")


# -- review ------------------------------------------------------------------------------------


def test_review_list_and_resolve(app: App) -> None:
    jobs = app.tasks["send"].enqueue_many([{"to": f"u{i}"} for i in range(3)])
    fine = app.tasks["transcode"].enqueue()
    app.run_worker(queues=["notifications", "content"], burst=True)
    assert ids(app.admin.review_list()) == sorted(ids(jobs), reverse=True)
    assert app.admin.review_list(queue="content") == []
    assert ids(app.admin.review_list(task="send", limit=2)) == [jobs[2].id, jobs[1].id]
    assert ids(app.admin.review_list(before_id=jobs[1].id)) == [jobs[0].id]

    resolved = app.admin.resolve([jobs[0].id, fine.id], "smtp relay fixed; users told")
    assert ids(resolved) == [jobs[0].id]
    after = app.get_job(jobs[0].id)
    assert after.state == "failed" and not after.needs_review
    assert after.review_note == "smtp relay fixed; users told" and after.reviewed_at is not None
    assert ids(app.admin.review_list()) == [jobs[2].id, jobs[1].id]
    assert app.admin.resolve([jobs[0].id], "again") == []  # already dealt with
    with pytest.raises(InvalidInput, match="--note"):
        app.admin.resolve([jobs[1].id], "   ")
    with pytest.raises(InvalidInput, match="no job 777"):
        app.admin.resolve([jobs[1].id, 777], "x")
    assert app.get_job(jobs[1].id).needs_review


# -- the audit log -----------------------------------------------------------------------------


def test_every_action_is_audited_with_who_what_and_how_many(app: App, clock) -> None:
    jobs = app.tasks["send"].enqueue_many([{"to": f"u{i}"} for i in range(2)])
    pending = app.tasks["transcode"].enqueue()
    app.run_worker(queues=["notifications"], burst=True)

    app.admin.retry(ids(jobs), dry_run=True)  # dry runs are not audited
    app.admin.cancel([pending.id], dry_run=True)
    assert app.admin.audit() == []

    app.admin.retry(ids(jobs), actor="alice@dashboard")
    app.admin.cancel([pending.id])
    app.admin.pause("content", actor="bob")
    entries = app.admin.audit()
    assert [e.action for e in entries] == ["queues.pause", "jobs.cancel", "jobs.retry"]
    pause, cancel, retry = entries
    assert (retry.actor, retry.count, sorted(retry.job_ids)) == ("alice@dashboard", 2, ids(jobs))
    assert retry.params == {"ids": ids(jobs)} and retry.at == clock.now()
    assert (cancel.actor, cancel.count, cancel.job_ids) == (getpass.getuser(), 1, [pending.id])
    assert (pause.actor, pause.params, pause.count) == ("bob", {"queue": "content"}, 1)
    assert app.admin.audit(action="jobs.cancel") == [cancel]
    assert app.admin.audit(actor="bob") == [pause]
    assert app.admin.audit(limit=1) == [pause]
    assert app.admin.audit(before_id=cancel.id) == [retry]
    assert pause.to_dict()["at"] == clock.now().isoformat()
    with pytest.raises(InvalidInput, match="limit"):
        app.admin.audit(limit=0)


# -- clear-locks and expire-stuck ----------------------------------------------------------------


def test_clear_locks_releases_the_jobs_of_a_silent_worker(app: App, clock: FrozenClock) -> None:
    dead_job, live_job = app.tasks["transcode"].enqueue_many([{"n": 1}, {"n": 2}])
    heartbeat(app, "w-dead")
    heartbeat(app, "w-live")
    dead_fence = claim(app, "w-dead", lease=3600)  # a long lease: only its silence counts
    claim(app, "w-live", lease=3600)
    clock.advance(61)
    heartbeat(app, "w-live")
    assert app.admin.clear_locks("5m") == []  # silent, but not for that long

    before = app.admin.list_jobs()
    would = app.admin.clear_locks("60s", dry_run=True)
    assert ids(would) == [dead_job.id] and would[0].locked_by == "w-dead"
    assert app.admin.list_jobs() == before

    [released] = app.admin.clear_locks("60s")
    assert released.id == dead_job.id
    after = app.get_job(dead_job.id)
    assert (after.state, after.locked_by, after.error) == ("pending", None, "worker lost")
    assert after.attempts[-1]["outcome"] == "lost" and after.attempts[-1]["worker"] == "w-dead"
    assert app.get_job(live_job.id).state == "running"
    assert app.backend.job_complete(dead_fence, "1") is False  # the silent worker comes back late
    [entry] = app.admin.audit(action="admin.clear-locks", limit=1)
    assert (entry.count, entry.job_ids, entry.params) == (1, [dead_job.id], {"dead_for": 60.0})
    assert [e.count for e in app.admin.audit(action="admin.clear-locks")] == [1, 0]
    again = claim(app, "w-live")
    assert (again.job_id, again.attempt) == (dead_job.id, 2)


def test_clear_locks_releases_expired_leases_and_stopped_workers(app: App, clock) -> None:
    expired, stopped = app.tasks["transcode"].enqueue_many([{"n": 1}, {"n": 2}])
    heartbeat(app, "w-1")
    heartbeat(app, "w-2")
    claim(app, "w-1", lease=10)
    claim(app, "w-2", lease=3600)
    app.backend.worker_stop("w-2")
    clock.advance(11)
    heartbeat(app, "w-1")  # alive, but its lease ran out
    released = app.admin.clear_locks("60s")
    assert sorted(ids(released)) == [expired.id, stopped.id]


def test_expire_stuck_retries_as_a_new_attempt_fenced(app: App, clock: FrozenClock) -> None:
    stuck, fresh = app.tasks["transcode"].enqueue_many([{"n": 1}, {"n": 2}])
    old_fence = claim(app, "w-stopped", lease=3600)
    clock.advance(20 * 60)
    claim(app, "w-2", lease=3600)
    before = app.admin.list_jobs()
    would = app.admin.expire_stuck("15m", dry_run=True)
    assert ids(would) == [stuck.id]
    assert app.admin.list_jobs() == before
    assert app.admin.expire_stuck("15m", queue="notifications") == []

    [expired] = app.admin.expire_stuck("15m", actor="ops")
    assert expired.id == stuck.id and expired.locked_by == "w-stopped"  # as it was
    after = app.get_job(stuck.id)
    assert (after.state, after.locked_by, after.attempt) == ("pending", None, 1)
    assert after.attempts[-1]["outcome"] == "expired" and "expired by ops" in after.error
    assert app.get_job(fresh.id).state == "running"

    new_fence = claim(app, "w-3")
    assert (new_fence.job_id, new_fence.attempt) == (stuck.id, 2)  # a new attempt
    assert app.backend.job_complete(old_fence, '"late"') is False  # the stopped worker resumes
    assert app.backend.job_complete(new_fence, '"mine"')
    done = app.get_job(stuck.id)
    assert (done.state, done.result, done.attempt) == ("complete", "mine", 2)
    [entry] = app.admin.audit(action="admin.expire-stuck", limit=1)
    assert (entry.actor, entry.count, entry.job_ids) == ("ops", 1, [stuck.id])


def test_expire_stuck_with_fail(app: App, clock: FrozenClock) -> None:
    job = app.tasks["transcode"].enqueue()
    old_fence = claim(app, "w-1", lease=3600)
    clock.advance(3600)
    [expired] = app.admin.expire_stuck("30m", fail=True)
    assert expired.id == job.id
    after = app.get_job(job.id)
    assert (after.state, after.failure, after.needs_review) == ("failed", "expired", True)
    assert after.attempts[-1]["outcome"] == "expired"
    assert app.backend.job_complete(old_fence, "1") is False
    assert app.get_job(job.id).state == "failed"
    with pytest.raises(InvalidInput, match="--older-than"):
        app.admin.expire_stuck("forever")


# -- workers -----------------------------------------------------------------------------------


def test_workers_alive_dead_or_stopped_by_the_database_clock(app: App, clock) -> None:
    app.tasks["transcode"].enqueue_many([{"n": 1}, {"n": 2}])
    for worker in ("w-alive", "w-dead", "w-stopped"):
        heartbeat(app, worker)
    claim(app, "w-alive", lease=3600)
    claim(app, "w-alive", lease=3600)
    clock.advance(61)
    heartbeat(app, "w-alive")
    app.backend.worker_stop("w-stopped")
    workers = {w.id: w for w in app.admin.workers()}
    assert {k: w.state for k, w in workers.items()} == {
        "w-alive": "alive",
        "w-dead": "dead",
        "w-stopped": "stopped",
    }
    assert workers["w-alive"].jobs == 2 and workers["w-dead"].jobs == 0
    assert workers["w-alive"].heartbeat_at == clock.now()
    as_dict = workers["w-alive"].to_dict()
    assert as_dict["heartbeat_at"] == clock.now().isoformat() and as_dict["queues"] == ["content"]
    assert {w.state for w in app.admin.workers(dead_after="5m")} == {"alive", "stopped"}
