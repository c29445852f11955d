"""Logic and contention faults of FAULTS.md (F10-F14, F16, F17), on both engines.

No process is killed here: these are the races and the rules that hold without a crash. Workers
run in-process (`Worker` threads; each contender its own `App`, hence its own connections), the
backend's claim and the admin actions are called directly where a whole worker is too coarse,
and retry arithmetic runs on a frozen database clock (`frozen_app`), so nothing sleeps on it.

Short forms take seconds; ROADIE_FAULTS=long (`make test-faults`) runs the FAULTS.md sizes
(F12 100k jobs, F13 200 running jobs, F14 10k leases) and prints the figures.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from roadie import App, FrozenClock, Permanent, Transient
from roadie.jobs import Fence, NewJob
from roadie.maintenance import Maintenance
from roadie.worker import Worker
from tests.helpers import run_together, wait_until
from tests.processes.helpers import Database

LONG = os.environ.get("ROADIE_FAULTS") == "long"


def outcomes(app: App, job_id: int) -> list[tuple[int, str]]:
    return [(a["attempt"], a["outcome"]) for a in app.get_job(job_id).attempts]


def report(line: str) -> None:
    """A measured figure, printed (pytest -s shows it; the long form's report collects it)."""
    print(f"[faults-logic] {line}")


# -- F10 retries on the database clock ---------------------------------------------------------


def test_f10_transient_three_times_then_success_at_attempt_4(frozen_app: App, clock) -> None:
    """F10: a job failing transiently 3 times completes at attempt 4; each gap before the next
    attempt is the default backoff (1 s x 2^(n-1)) within its ±20 % jitter, measured on the
    database clock, and no attempt runs a moment before its `run_at`."""
    runs: list[int] = []

    @frozen_app.task(queue="content", max_attempts=10)
    def flaky(ctx: Any) -> str:
        runs.append(ctx.job.attempt)
        if ctx.job.attempt <= 3:
            raise Transient(f"relay busy ({ctx.job.attempt})")
        return "sent"

    job = flaky.enqueue()
    gaps = []
    for attempt in (1, 2, 3):
        frozen_app.run_worker(burst=True)
        after = frozen_app.get_job(job.id)
        assert (after.state, after.attempt) == ("pending", attempt)
        gap = (after.run_at - clock.now()).total_seconds()
        gaps.append(gap)
        expected = 2 ** (attempt - 1)
        assert 0.8 * expected - 0.001 <= gap <= 1.2 * expected + 0.001, (
            attempt,
            gap,
        )  # µs rounding
        clock.advance(gap - 0.01)
        frozen_app.run_worker(burst=True)  # 10 ms early: nothing runs
        assert frozen_app.get_job(job.id).attempt == attempt
        clock.advance(0.011)  # 1 ms late (the stored times are rounded to microseconds)
    frozen_app.run_worker(burst=True)
    done = frozen_app.get_job(job.id)
    assert (done.state, done.attempt, done.result, done.failure) == ("complete", 4, "sent", None)
    assert runs == [1, 2, 3, 4]
    assert outcomes(frozen_app, job.id) == [
        (1, "retry"),
        (2, "retry"),
        (3, "retry"),
        (4, "complete"),
    ]
    assert [a["error"] for a in done.attempts[:3]] == [f"relay busy ({n})" for n in (1, 2, 3)]
    report(f"F10 gaps {[round(g, 3) for g in gaps]} s (backoff 1, 2, 4 s ±20 %)")


def test_f10_permanent_fails_at_attempt_1(frozen_app: App) -> None:
    """F10: Permanent fails the job at once: attempt 1, no retry although 10 were allowed."""

    @frozen_app.task(queue="content", max_attempts=10)
    def corrupt(ctx: Any) -> None:
        raise Permanent("corrupt upload")

    job = corrupt.enqueue()
    for _ in range(3):
        frozen_app.run_worker(burst=True)
    after = frozen_app.get_job(job.id)
    assert (after.state, after.failure, after.attempt) == ("failed", "permanent", 1)
    assert outcomes(frozen_app, job.id) == [(1, "failed")]


def test_f10_exhausted_keeps_the_full_error_history(frozen_app: App, clock) -> None:
    """F10: past max_attempts the job fails `exhausted` keeping every attempt's error and
    traceback; an administrator's retry adds attempts after them, never over them."""

    @frozen_app.task(queue="content", max_attempts=3)
    def down(ctx: Any) -> None:
        raise TimeoutError(f"storage timed out on attempt {ctx.job.attempt}")

    job = down.enqueue()
    for _ in range(3):
        frozen_app.run_worker(burst=True)
        clock.advance(3600)
    failed = frozen_app.get_job(job.id)
    assert (failed.state, failed.failure, failed.attempt) == ("failed", "exhausted", 3)
    assert outcomes(frozen_app, job.id) == [(1, "retry"), (2, "retry"), (3, "failed")]
    for n, record in enumerate(failed.attempts, 1):
        assert record["error"] == f"TimeoutError: storage timed out on attempt {n}"
        assert "TimeoutError" in record["traceback"]
    frozen_app.admin.retry([job.id])
    frozen_app.run_worker(burst=True)
    again = frozen_app.get_job(job.id)
    assert again.attempt == 4 and [a["attempt"] for a in again.attempts] == [1, 2, 3, 4]
    assert again.attempts[:3] == failed.attempts


# -- F11 a long retry delay outlives many short leases -----------------------------------------


def test_f11_a_retry_delay_of_an_hour_is_kept_by_the_database_clock(frozen_app: App, clock) -> None:
    """F11 on a frozen clock: retried with `retry_in=1h` under a 2 s lease, the job is neither
    claimed nor reaped at 59:59, and is claimed (attempt 2) at 1 h."""

    @frozen_app.task(queue="content")
    def later(ctx: Any) -> None:
        if ctx.job.attempt == 1:
            raise Transient("come back later", retry_in="1h")

    job = later.enqueue()
    assert frozen_app.run_worker(burst=True, lease="2s") == 0
    for step in (2, 30, 600, 2967.999):  # 3599.999 s in all: many leases, still an hour early
        clock.advance(step)
        assert Maintenance(frozen_app.backend).run_once()["reaped"] == []
        assert frozen_app.backend.job_claim("early", "content", 10, 2.0) == []
    assert frozen_app.get_job(job.id).attempt == 1
    clock.advance(0.001)
    [claimed] = frozen_app.backend.job_claim("on-time", "content", 10, 2.0)
    assert (claimed.id, claimed.attempt) == (job.id, 2)


def test_f11_no_run_before_run_at_with_a_live_worker_and_short_leases(app: App) -> None:
    """F11 on the real clock: a worker with a 1 s lease and a busy reaper keeps reclaiming an
    abandoned job (proof it ran sweep after sweep) while the job retried for 1 h stays pending
    at attempt 1, its `run_at` untouched."""
    runs: list[int] = []

    @app.task(queue="content")
    def later(ctx: Any) -> None:
        runs.append(ctx.job.attempt)
        raise Transient("come back later", retry_in="1h")

    @app.task(queue="content")
    def canary(ctx: Any) -> str:
        return "ran"

    job = later.enqueue()
    abandoned = canary.enqueue_many([{} for _ in range(3)])
    held = app.backend.job_claim("dead-host:1:abc", "content", 10, 1.0)  # a worker that died
    assert {j.id for j in held} == {job.id, *(j.id for j in abandoned)}
    # the dead worker held `later` too: give it back as its first attempt, retried in 1 h
    assert app.backend.job_retry(Fence(job.id, 1, "dead-host:1:abc"), 3600, "retry", "x", None)
    run_at = app.get_job(job.id).run_at
    worker = Worker(
        app.backend, app.tasks, ["content"], lease=1.0, sweep_interval=0.2, poll_interval=0.05
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(
            lambda: all(app.get_job(j.id).state == "complete" for j in abandoned),
            30,
            "the reaper gave back the abandoned jobs and the worker ran them",
        )
        # a few more leases' worth of sweeps and claims
        more = canary.enqueue_many([{} for _ in range(3)])
        wait_until(lambda: all(app.get_job(j.id).state == "complete" for j in more), 30)
    finally:
        worker.stop()
        thread.join(10)
    after = app.get_job(job.id)
    assert (after.state, after.attempt, after.run_at) == ("pending", 1, run_at)
    assert runs == []  # never started by the live worker


# -- F12 pure claim contention -----------------------------------------------------------------


def enqueue_in_batches(app: App, task: str, count: int, batch: int = 5_000) -> None:
    for start in range(0, count, batch):
        app.tasks[task].enqueue_many([{"n": n} for n in range(start, min(count, start + batch))])


def test_f12_many_claimers_take_each_job_once(make_app: Callable[..., App], db_url: str) -> None:
    """F12: claimers on their own connections (32 on PostgreSQL, 8 on SQLite: one writer at a
    time anyway) claim random batches of 1-50 until the queue is empty: every job is claimed
    exactly once, at attempt 1, by the claimer the database says holds it; no claim returns
    more than its limit; no error (no deadlock, no lock timeout) reaches a claimer."""
    postgres = db_url.startswith("postgresql")
    claimers = 32 if postgres else 8
    total = 100_000 if LONG else 5_000
    producer = make_app()
    producer.task(queue="content", name="noop")(lambda ctx, n: n)
    enqueue_in_batches(producer, "noop", total)
    apps = [make_app(pool_size=2) for _ in range(claimers)]

    def claim_all(index: int) -> tuple[str, list[tuple[int, int]], int]:
        backend, rng = apps[index].backend, random.Random(index)
        worker_id = f"claimer-{index}"
        taken: list[tuple[int, int]] = []
        claims = 0
        while True:
            limit = rng.randint(1, 50)
            jobs = backend.job_claim(worker_id, "content", limit, 300.0)
            claims += 1
            assert len(jobs) <= limit, (limit, len(jobs))
            if not jobs:
                return worker_id, taken, claims
            taken.extend((job.id, job.attempt) for job in jobs)

    started = time.monotonic()
    results = run_together(claim_all, list(range(claimers)))
    elapsed = time.monotonic() - started
    claimed = [pair for _, taken, _ in results for pair in taken]
    ids = [job_id for job_id, _ in claimed]
    assert len(ids) == total and len(set(ids)) == total, (len(ids), len(set(ids)))
    assert {attempt for _, attempt in claimed} == {1}
    db = Database(db_url)
    try:
        holders = dict(db.rows("SELECT id, locked_by FROM roadie_jobs WHERE state = 'running'"))
        assert db.value("SELECT count(*) FROM roadie_jobs WHERE state <> 'running'") == 0
        assert db.value("SELECT max(attempt) FROM roadie_jobs") == 1
    finally:
        db.close()
    for worker_id, taken, _ in results:
        assert all(holders[job_id] == worker_id for job_id, _ in taken)
    calls = sum(claims for _, _, claims in results)
    busiest = max(len(taken) for _, taken, _ in results)
    report(
        f"F12 {'postgres' if postgres else 'sqlite'}: {total} jobs, {claimers} claimers, "
        f"{calls} claims in {elapsed:.2f} s ({total / elapsed:.0f} jobs/s claimed), "
        f"busiest claimer {busiest} jobs, 0 errors"
    )


# -- F14 concurrent reapers --------------------------------------------------------------------


def test_f14_concurrent_reapers_reclaim_each_expired_lease_once(
    make_app: Callable[..., App], db_url: str
) -> None:
    """F14: jobs held by a worker that never registered (no worker row) whose leases expired;
    three reapers, one per node, run at once: each job is reclaimed exactly once (one `lost`
    attempt record, still attempt 1), a second concurrent round reaps nothing, no reaper
    stalls, and the next claim is attempt 2."""
    clock = FrozenClock()
    total = 10_000 if LONG else 1_000
    producer = make_app(clock=clock)
    producer.task(queue="content", name="noop")(lambda ctx, n: n)
    enqueue_in_batches(producer, "noop", total)
    held = producer.backend.job_claim("ghost-host:1:dead", "content", total, 30.0)
    assert len(held) == total
    assert producer.backend.worker_list() == []  # the holder never registered
    clock.advance(31)
    reapers = [make_app(clock=clock) for _ in range(3)]

    def reap(app: App) -> tuple[list[int], float]:
        started = time.monotonic()
        reaped = Maintenance(app.backend).run_once()["reaped"]
        return [job.id for job in reaped], time.monotonic() - started

    first = run_together(reap, reapers)
    ids = [job_id for reaped, _ in first for job_id in reaped]
    assert len(ids) == total and len(set(ids)) == total
    second = run_together(reap, reapers)
    assert [reaped for reaped, _ in second] == [[], [], []]
    db = Database(db_url)
    try:
        rows = db.rows("SELECT state, attempt, lost_count, locked_by FROM roadie_jobs")
    finally:
        db.close()
    assert {tuple(row) for row in rows} == {("pending", 1, 1, None)}
    sample = random.Random(0).sample([job.id for job in held], 20)
    for job_id in sample:
        assert outcomes(producer, job_id) == [(1, "lost")]
    # Lost jobs are suspects (they may have killed their worker): one per claim.
    again = [
        job for _ in range(5) for job in producer.backend.job_claim("alive", "content", 5, 30.0)
    ]
    assert len(again) == 5 and {job.attempt for job in again} == {2}
    report(
        f"F14 {db_url.split(':')[0]}: {total} expired leases, 3 reapers: "
        f"{[len(r) for r, _ in first]} reaped, run_once {[round(t, 2) for _, t in first]} s"
    )


# -- F16 / F17 enqueueing inside a transaction -------------------------------------------------
# roadie has no "enqueue into my application's transaction" call: jobs are enqueued in
# transactions of their own, except the children a handler spawns, which are written in the
# transaction of its fenced completion (`Backend.job_complete(..., tx=...)`), the one a task
# opens with `ctx.transaction()`. That is the transaction F16 and F17 are about.


def waiting_on_a_lock(db: Database) -> bool:
    """Another session of this PostgreSQL database waits on a row or index lock."""
    return bool(
        db.value(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
    )


@pytest.mark.parametrize("first", ["rolls back", "commits"])
def test_f16_same_idempotency_key_in_two_transactions(
    make_app: Callable[..., App], db_url: str, first: str
) -> None:
    """F16 (oban#1093): a completion transaction spawns a child with idempotency key K and stays
    open while another enqueue with K arrives and waits for it. If the first rolls back, the
    waiting enqueue inserts its own job; if it commits, the enqueue returns the child. Either
    way exactly one job holds K, and the enqueue neither fails nor returns a vanished job."""
    app, other = make_app(), make_app()
    for each in (app, other):
        each.task(queue="content", name="parent")(lambda ctx: None)
        each.task(queue="indexing", name="index")(lambda ctx, n: n)
    parent = app.enqueue("parent", {})
    [claimed] = app.backend.job_claim("w1", "content", 1, 30.0)
    fence = Fence(claimed.id, claimed.attempt, "w1")
    index = app.tasks["index"]
    child: NewJob = app.new_job(index, {"n": 1}, index.options(idempotency_key="K").overrides)

    tx = app.backend.transaction_begin()
    assert app.backend.job_complete(fence, "null", tx=tx, children=[child])
    result: list[Any] = []
    racer = threading.Thread(
        target=lambda: result.append(other.enqueue("index", {"n": 2}, idempotency_key="K"))
    )
    racer.start()
    db = Database(db_url)
    try:
        if db.sqlite:  # it waits for the write lock: nothing to observe but that it waits
            racer.join(0.3)
            assert racer.is_alive()
        else:
            wait_until(lambda: waiting_on_a_lock(db), 10, "the second enqueue waiting on K")
        (tx.rollback if first == "rolls back" else tx.commit)()
        racer.join(30)
        assert not racer.is_alive() and len(result) == 1
        rows = db.rows("SELECT id, parent_id FROM roadie_jobs WHERE idempotency_key = 'K'")
    finally:
        db.close()
    [(job_id, parent_id)] = rows
    enqueued = result[0]
    assert enqueued.id == job_id and enqueued.idempotency_key == "K"
    if first == "rolls back":
        assert parent_id is None and enqueued.args == {"n": 2}
        assert app.get_job(parent.id).state == "running"  # its completion never happened
    else:
        assert parent_id == parent.id and enqueued.args == {"n": 1}
        assert app.get_job(parent.id).state == "waiting"


@pytest.mark.parametrize("ending", ["rolled back", "committed"])
def test_f17_a_spawn_exists_only_once_its_transaction_commits(
    app: App, db_url: str, ending: str
) -> None:
    """F17: a handler spawns a child and writes an effect in `ctx.transaction()`, then holds
    the transaction open. Meanwhile another connection sees neither the child nor the effect
    and (PostgreSQL; SQLite's reads only, as its write lock is held) cannot claim the child.
    Rolled back (the handler raises): no child, no effect, ever. Committed: both appear, and
    the child is claimable at once."""
    db = Database(db_url)
    db.rows("DROP TABLE IF EXISTS f17_effects")
    db.rows("CREATE TABLE f17_effects (job_id BIGINT PRIMARY KEY)")
    ph = "?" if db.sqlite else "%s"
    opened, release = threading.Event(), threading.Event()

    @app.task(queue="indexing")
    def index(ctx: Any, doc: int) -> int:
        return doc

    @app.task(queue="content")
    def publish(ctx: Any) -> str:
        ctx.spawn(index, doc=7)
        with ctx.transaction() as conn:
            conn.execute(f"INSERT INTO f17_effects (job_id) VALUES ({ph})", (ctx.job.id,))
            opened.set()
            assert release.wait(30)
        if ending == "rolled back":
            raise Permanent("changed my mind after the transaction")
        return "published"

    job = publish.enqueue()
    worker = Worker(app.backend, app.tasks, ["content"], poll_interval=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert opened.wait(10)
        for _ in range(5):  # the transaction is open: nothing of it shows, nothing is claimable
            assert db.value("SELECT count(*) FROM roadie_jobs WHERE parent_id IS NOT NULL") == 0
            assert db.value("SELECT count(*) FROM f17_effects") == 0
            if not db.sqlite:
                with App(db_url) as claimer:
                    assert claimer.backend.job_claim("other", "indexing", 10, 30.0) == []
        release.set()
        wait_until(lambda: app.get_job(job.id).state in ("failed", "waiting"), 15, "the end")
    finally:
        release.set()
        worker.stop()
        thread.join(10)
    children = db.rows("SELECT id FROM roadie_jobs WHERE parent_id = ?", job.id)
    effects = db.value("SELECT count(*) FROM f17_effects")
    db.close()
    if ending == "rolled back":
        assert app.get_job(job.id).state == "failed"
        assert (children, effects) == ([], 0)
        assert app.backend.job_claim("other", "indexing", 10, 30.0) == []
    else:
        assert app.get_job(job.id).state == "waiting"
        assert effects == 1 and len(children) == 1
        [claimed] = app.backend.job_claim("other", "indexing", 10, 30.0)
        assert (claimed.id, claimed.args) == (children[0][0], {"doc": 7})


def test_f16_a_spawned_child_takes_no_idempotency_key(app: App) -> None:
    """F16's other side: a child spawned with an idempotency key another job already holds was
    silently not inserted, and its parent waited forever for no child. A spawn now refuses a
    key (a child is once-only with its parent's completion already): the parent fails
    permanently, saying so, and the job holding the key is untouched."""

    @app.task(queue="indexing")
    def index(ctx: Any, n: int) -> int:
        return n

    @app.task(queue="content")
    def parent(ctx: Any) -> None:
        ctx.spawn(index.options(idempotency_key="K"), n=1)

    holder = index.options(idempotency_key="K").enqueue(n=0)
    job = parent.enqueue()
    assert app.run_worker(queues=["content"], burst=True) == 0
    after = app.get_job(job.id)
    assert (after.state, after.failure, after.children) == ("failed", "permanent", [])
    assert "ctx.spawn takes no idempotency_key" in after.error
    same = app.get_job(holder.id)
    assert (same.state, same.parent_id, same.args) == ("pending", None, {"n": 0})


# -- F13 administrators force running jobs out while their workers live -----------------------


class Holders:
    """The `hold` task on several apps: each run waits until released or cancelled, and every
    start and end is recorded as (job id, attempt)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.started: list[tuple[int, int]] = []
        self.ended: list[tuple[int, int, bool]] = []

    def register(self, app: App) -> None:
        @app.task(queue="content", max_attempts=5, name="hold")
        def hold(ctx: Any, n: int) -> int:
            with self.lock:
                self.started.append((ctx.job.id, ctx.job.attempt))
            while not ctx.cancelled and not self.release.is_set():
                time.sleep(0.01)
            with self.lock:
                self.ended.append((ctx.job.id, ctx.job.attempt, ctx.cancelled))
            return n

    def ended_cancelled(self, attempt: int) -> int:
        with self.lock:
            return sum(1 for _, a, cancelled in self.ended if a == attempt and cancelled)


def test_f13_expire_and_clear_locks_with_live_workers_and_the_reaper(
    make_app: Callable[..., App], db_url: str
) -> None:
    """F13: running jobs held by two live workers (their reapers sweeping). Administrators run
    expire-stuck twice at once, with clear-locks and a reaper beside them: each job makes one
    transition (one `expired` record), clear-locks and the reaper take nothing from live
    holders, the workers get LeaseLost and stop those handlers, a second round changes
    nothing. Expired again with --fail, then retried twice at once: one new attempt each;
    attempts only grow (1 expired, 2 expired, 3 complete) and no attempt ran twice."""
    total = 200 if LONG else 20
    holders = Holders()
    worker_apps = [make_app(), make_app()]
    for each in worker_apps:
        holders.register(each)
    app = make_app()
    holders.register(app)
    ids = [job.id for job in app.tasks["hold"].enqueue_many([{"n": n} for n in range(total)])]
    workers = [
        Worker(
            each.backend,
            each.tasks,
            ["content"],
            concurrency=total,
            lease=3.0,
            sweep_interval=0.5,
            poll_interval=0.05,
        )
        for each in worker_apps
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    admins = [make_app() for _ in range(4)]
    db = Database(db_url)

    def running_at(attempt: int) -> bool:
        return (
            db.value(
                "SELECT count(*) FROM roadie_jobs WHERE state = 'running' AND attempt = ?", attempt
            )
            == total
        )

    def lease_lost() -> int:
        return sum(w.lease_lost for w in workers)

    try:
        wait_until(lambda: running_at(1), 30, "every job running, attempt 1")
        app.admin.pause("content")  # expired jobs wait, so each round sees one attempt
        expire = lambda a: a.admin.expire_stuck("0s")  # noqa: E731
        first = run_together(
            lambda step: step[0](step[1]),
            [
                (expire, admins[0]),
                (expire, admins[1]),
                (lambda a: a.admin.clear_locks("60s"), admins[2]),
                (lambda a: Maintenance(a.backend).run_once()["reaped"], admins[3]),
            ],
        )
        expired = [job.id for job in first[0] + first[1]]
        assert sorted(expired) == sorted(ids), "each job expired exactly once"
        assert first[2] == [] and first[3] == []  # live holders keep their leases
        for job_id in ids:
            after = app.get_job(job_id)
            assert (after.state, after.attempt) == ("pending", 1)
            assert outcomes(app, job_id) == [(1, "expired")]
        audit = app.admin.audit(action="admin.expire-stuck")
        assert sorted(entry.count for entry in audit) == sorted([len(first[0]), len(first[1])])
        wait_until(lambda: holders.ended_cancelled(1) == total, 30, "attempt-1 handlers stopped")
        # Counted once the worker has written (and been refused) the stopped handler's result.
        wait_until(lambda: lease_lost() >= total, 30, "attempt-1 results refused")
        # A second round: nothing is running, nothing changes.
        assert admins[0].admin.expire_stuck("0s") == [] and admins[1].admin.clear_locks() == []

        app.admin.resume("content")
        wait_until(lambda: running_at(2), 30, "every job running again, attempt 2")
        app.admin.pause("content")
        fail = lambda a: a.admin.expire_stuck("0s", fail=True)  # noqa: E731
        second = run_together(
            lambda step: step[0](step[1]),
            [
                (fail, admins[0]),
                (fail, admins[1]),
                (lambda a: Maintenance(a.backend).run_once()["reaped"], admins[3]),
            ],
        )
        assert sorted(job.id for job in second[0] + second[1]) == sorted(ids)
        assert second[2] == []
        assert all(app.get_job(i).failure == "expired" for i in ids)
        wait_until(lambda: holders.ended_cancelled(2) == total, 30, "attempt-2 handlers stopped")
        wait_until(lambda: lease_lost() >= 2 * total, 30, "attempt-2 results refused")

        retried = run_together(lambda a: a.admin.retry(ids), admins[:2])
        assert sorted(job.id for job in retried[0] + retried[1]) == sorted(ids)
        app.admin.resume("content")
        holders.release.set()
        wait_until(
            lambda: db.value("SELECT count(*) FROM roadie_jobs WHERE state = 'complete'") == total,
            30,
            "every job complete",
        )
    finally:
        holders.release.set()
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(10)
        db.close()
    for job_id in ids:
        after = app.get_job(job_id)
        assert (after.state, after.attempt) == ("complete", 3)
        assert outcomes(app, job_id) == [(1, "expired"), (2, "expired"), (3, "complete")]
    assert len(holders.started) == len(set(holders.started)) == 3 * total
    report(f"F13 {db_url.split(':')[0]}: {total} jobs, LeaseLost told {lease_lost()} times")
