"""Parent and child jobs on real `roadie worker` processes: SIGKILL in a parent's handler and in a
callback, and many children ending at once on two workers, on both engines.

A trigger on `roadie_jobs` (installed for these tests only) logs every change of a job's state or
`finished_at` into `transitions`, in the transaction that makes it: "the parent completed exactly
once, after its last child" is read from that log, not guessed from the final row.

Workers run with a 2 s lease and sweep every 0.5 s, so a job lost with its worker is back in the
queue about 2.5 s after the SIGKILL.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from roadie import App
from tests.processes import tree_workload
from tests.processes.helpers import Database, WorkerProcess, wait_until

APP = "tests.processes.tree_workload:app"
SWEEP = ("--sweep-interval", "0.5s")

PG_TRIGGER = (
    "CREATE OR REPLACE FUNCTION roadie_test_transition() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN INSERT INTO transitions (job_id, old_state, new_state, finished_at)"
    " VALUES (NEW.id, OLD.state, NEW.state, NEW.finished_at); RETURN NULL; END $$",
    "CREATE TRIGGER roadie_test_transition AFTER UPDATE ON roadie_jobs FOR EACH ROW"
    " WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.finished_at IS DISTINCT FROM NEW.finished_at)"
    " EXECUTE FUNCTION roadie_test_transition()",
)
SQLITE_TRIGGER = (
    "CREATE TRIGGER roadie_test_transition AFTER UPDATE ON roadie_jobs FOR EACH ROW"
    " WHEN OLD.state IS NOT NEW.state OR OLD.finished_at IS NOT NEW.finished_at"
    " BEGIN INSERT INTO transitions (job_id, old_state, new_state, finished_at)"
    " VALUES (NEW.id, OLD.state, NEW.state, NEW.finished_at); END",
)


@pytest.fixture
def tree_db(db: Database) -> Iterator[Database]:
    """The test's database with the tree tables and the `transitions` log on `roadie_jobs`."""
    for table in ("child_effects", "callback_runs", "transitions"):
        db.rows(f"DROP TABLE IF EXISTS {table}")
    db.rows("CREATE TABLE child_effects (child_id BIGINT PRIMARY KEY, parent_id BIGINT NOT NULL)")
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT" if db.sqlite else "BIGSERIAL PRIMARY KEY"
    db.rows(f"CREATE TABLE callback_runs (seq {serial}, child_id BIGINT NOT NULL, pid INTEGER)")
    if db.sqlite:
        db.rows(
            "CREATE TABLE transitions (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id BIGINT,"
            " old_state TEXT, new_state TEXT, finished_at REAL)"
        )
        for statement in SQLITE_TRIGGER:
            db.rows(statement)
    else:
        db.rows(
            "CREATE TABLE transitions (seq BIGSERIAL PRIMARY KEY, job_id BIGINT,"
            " old_state TEXT, new_state TEXT, finished_at TIMESTAMPTZ)"
        )
        for statement in PG_TRIGGER:
            db.rows(statement)
    yield db
    if not db.sqlite:  # the session's PostgreSQL database outlives this test
        db.rows("DROP TRIGGER IF EXISTS roadie_test_transition ON roadie_jobs")
        db.rows("DROP FUNCTION IF EXISTS roadie_test_transition()")


@pytest.fixture
def trees(db_url: str) -> Iterator[App]:
    """The tree workload's app on the test's database, to enqueue with."""
    with tree_workload.build(db_url) as app:
        yield app


# -- reading the database -------------------------------------------------------------------------


def children(db: Database, parent_id: int) -> list[tuple[Any, ...]]:
    """(id, state, attempt) of the jobs the parent spawned (not its callbacks)."""
    return db.rows(
        "SELECT id, state, attempt FROM roadie_jobs"
        " WHERE parent_id = ? AND callback_key IS NULL ORDER BY id",
        parent_id,
    )


def callbacks(db: Database, parent_id: int) -> list[tuple[Any, ...]]:
    """(id, task, callback_key, state, attempt) of the parent's callback jobs."""
    return db.rows(
        "SELECT id, task, callback_key, state, attempt FROM roadie_jobs"
        " WHERE parent_id = ? AND callback_key IS NOT NULL ORDER BY id",
        parent_id,
    )


def state_of(db: Database, job_id: int) -> str:
    return db.value("SELECT state FROM roadie_jobs WHERE id = ?", job_id)


def transitions(db: Database, job_id: int) -> list[tuple[str, str, bool]]:
    """(old state, new state, finished_at set) of each change of the job, in order."""
    rows = db.rows(
        "SELECT old_state, new_state, finished_at FROM transitions WHERE job_id = ? ORDER BY seq",
        job_id,
    )
    return [(old, new, finished is not None) for old, new, finished in rows]


def assert_ended_once_after_its_subtree(db: Database, parent_id: int) -> None:
    """The parent's completion is logged once, finished_at set once, both after every job under it."""
    completions = db.rows(
        "SELECT seq FROM transitions WHERE job_id = ? AND new_state = 'complete'", parent_id
    )
    assert len(completions) == 1, f"parent {parent_id} completed {len(completions)} times"
    assert (
        db.value(
            "SELECT count(*) FROM transitions WHERE job_id = ? AND finished_at IS NOT NULL",
            parent_id,
        )
        == 1
    ), "the parent's finished_at was written more than once"
    later = db.rows(
        "SELECT t.job_id, t.new_state FROM transitions t JOIN roadie_jobs j ON j.id = t.job_id"
        " WHERE j.parent_id = ? AND t.seq > ?",
        parent_id,
        completions[0][0],
    )
    assert later == [], "jobs under the parent changed after it completed"
    early = db.rows(
        "SELECT id, task, finished_at FROM roadie_jobs WHERE parent_id = ?"
        " AND finished_at > (SELECT finished_at FROM roadie_jobs WHERE id = ?)",
        parent_id,
        parent_id,
    )
    assert early == [], (
        f"parent finished at {db.value('SELECT finished_at FROM roadie_jobs WHERE id = ?', parent_id)}"
        f", before jobs under it: {early}"
    )


def wait_for_the_parent(db: Database, parent_id: int, count: int, timeout: float) -> None:
    """Wait for `count` children and every job under the parent to end, then for the parent to
    complete: a parent left waiting once its subtree has ended lost its completion."""

    def subtree_ended() -> bool:
        state = state_of(db, parent_id)
        assert state not in ("failed", "cancelled"), (
            f"parent {state}: {tree_detail(db, parent_id)()}"
        )
        return len(children(db, parent_id)) >= count and not open_under(db, parent_id)

    wait_until(
        subtree_ended,
        timeout=timeout,
        what=f"the parent's {count} children and their callbacks ended",
        detail=tree_detail(db, parent_id),
    )
    wait_until(
        lambda: state_of(db, parent_id) == "complete",
        timeout=2,
        what="the parent complete once everything under it ended (a lost completion?)",
        detail=tree_detail(db, parent_id),
    )


def open_under(db: Database, parent_id: int) -> int:
    return db.value(
        "SELECT count(*) FROM roadie_jobs WHERE parent_id = ?"
        " AND state NOT IN ('complete', 'failed', 'cancelled')",
        parent_id,
    )


def tree_detail(db: Database, parent_id: int) -> Callable[[], Any]:
    """What the failure message shows: the parent, its jobs by task and state, a few errors."""

    def detail() -> str:
        parent = db.rows(
            "SELECT state, attempt, failure, error FROM roadie_jobs WHERE id = ?", parent_id
        )
        under = db.rows(
            "SELECT task, state, count(*) FROM roadie_jobs WHERE parent_id = ?"
            " GROUP BY task, state ORDER BY task, state",
            parent_id,
        )
        errors = db.rows(
            "SELECT id, task, error FROM roadie_jobs WHERE parent_id = ? AND error IS NOT NULL"
            " ORDER BY id LIMIT 3",
            parent_id,
        )
        return f"parent {parent}, under it {under}, errors {errors}"

    return detail


# -- the tests ------------------------------------------------------------------------------------


def test_sigkill_in_a_parent_after_spawn_leaves_no_children_and_the_retry_spawns_them_once(
    tree_db: Database, trees: App, start_worker: Callable[..., WorkerProcess]
) -> None:
    db = tree_db
    parent = trees.tasks["spawn_then_hang"].enqueue(count=5)
    doomed = start_worker(*SWEEP, app=APP)
    wait_until(
        lambda: db.rows("SELECT pid FROM executions WHERE job_id = ?", parent.id),
        timeout=10,
        what="the parent's handler past its ctx.spawn calls",
    )
    assert children(db, parent.id) == [], "children written before the parent completed"
    assert state_of(db, parent.id) == "running"

    doomed.signal(signal.SIGKILL)
    assert doomed.wait(5) == -signal.SIGKILL
    assert children(db, parent.id) == [], "children written by a killed handler"

    survivor = start_worker(*SWEEP, app=APP)
    wait_for_the_parent(db, parent.id, 5, timeout=20)

    spawned = children(db, parent.id)
    assert [(state, attempt) for _, state, attempt in spawned] == [("complete", 1)] * 5
    assert callbacks(db, parent.id) == []
    done = trees.get_job(parent.id)
    assert done is not None
    assert (done.attempt, done.result, done.failure) == (2, 5, None)
    assert [(a["attempt"], a["outcome"]) for a in done.attempts] == [(1, "lost"), (2, "complete")]
    assert sorted(child.id for child in done.children) == [row[0] for row in spawned]
    assert db.rows(
        "SELECT attempt, pid FROM executions WHERE job_id = ? ORDER BY attempt", parent.id
    ) == [
        (1, doomed.pid),
        (2, survivor.pid),
    ]
    child_runs = db.rows(
        "SELECT job_id, attempt, pid FROM executions WHERE job_id <> ? ORDER BY job_id", parent.id
    )
    assert child_runs == [(row[0], 1, survivor.pid) for row in spawned], "each child ran once"
    assert transitions(db, parent.id) == [
        ("pending", "running", False),
        ("running", "pending", False),  # reaped: worker lost
        ("pending", "running", False),
        ("running", "waiting", False),
        ("waiting", "complete", True),
    ]
    assert_ended_once_after_its_subtree(db, parent.id)


def test_sigkill_in_a_callback_reruns_it_and_the_parent_completes_once(
    tree_db: Database, trees: App, start_worker: Callable[..., WorkerProcess]
) -> None:
    db = tree_db
    parent = trees.tasks["fan_out"].enqueue(count=3, hang_first=True)
    doomed = start_worker(*SWEEP, app=APP)
    hanging = wait_until(
        lambda: db.rows(
            "SELECT child_id, pid FROM callback_runs WHERE child_id IN"
            " (SELECT min(id) FROM roadie_jobs WHERE parent_id = ? AND callback_key IS NULL)",
            parent.id,
        ),
        timeout=10,
        what="the first child's callback started",
    )
    assert len(hanging) == 1, f"the first child's callback started {len(hanging)} times"
    [(first_child, pid)] = hanging
    assert pid == doomed.pid
    assert state_of(db, parent.id) == "waiting"
    assert db.rows("SELECT * FROM child_effects WHERE child_id = ?", first_child) == []

    doomed.signal(signal.SIGKILL)
    assert doomed.wait(5) == -signal.SIGKILL
    assert state_of(db, parent.id) == "waiting", "parent ended while a callback was in flight"

    survivor = start_worker(*SWEEP, app=APP)
    wait_for_the_parent(db, parent.id, 3, timeout=20)

    spawned = children(db, parent.id)
    assert len(spawned) == 3
    assert all(state == "complete" for _, state, _ in spawned)
    child_ids = [row[0] for row in spawned]
    runs = callbacks(db, parent.id)
    ended = sorted(f"child:{child}:{attempt}" for child, _, attempt in spawned)  # killed too?
    assert sorted(key for _, _, key, _, _ in runs) == ended, "one callback job per child"
    assert all(
        task == "fan_out_child_done" and state == "complete" for _, task, _, state, _ in runs
    )
    rerun = next(job for job, _, key, _, _ in runs if key == f"child:{first_child}:1")
    rerun_job = trees.get_job(rerun)
    assert rerun_job is not None
    assert [(a["attempt"], a["outcome"]) for a in rerun_job.attempts] == [
        (1, "lost"),
        (2, "complete"),
    ]
    assert db.rows(
        "SELECT pid FROM callback_runs WHERE child_id = ? ORDER BY seq", first_child
    ) == [
        (doomed.pid,),
        (survivor.pid,),
    ]
    assert db.rows("SELECT child_id, parent_id FROM child_effects ORDER BY child_id") == [
        (child, parent.id) for child in child_ids
    ], "each callback's effect committed exactly once"
    assert [(old, new) for old, new, _ in transitions(db, parent.id)] == [
        ("pending", "running"),
        ("running", "waiting"),
        ("waiting", "complete"),
    ]
    assert_ended_once_after_its_subtree(db, parent.id)
    done = trees.get_job(parent.id)
    assert done is not None
    assert (done.state, done.attempt, done.failure) == ("complete", 1, None)


@pytest.mark.parametrize("callback", [True, False], ids=["callback", "no_callback"])
def test_children_ending_at_once_on_two_workers_complete_the_parent_once(
    tree_db: Database, trees: App, start_worker: Callable[..., WorkerProcess], callback: bool
) -> None:
    db = tree_db
    workers = [start_worker("--concurrency", "4", *SWEEP, app=APP) for _ in range(2)]
    wait_until(
        lambda: db.value("SELECT count(*) FROM roadie_workers") == 2,
        timeout=10,
        what="both workers registered",
    )
    task = trees.tasks["fan_out" if callback else "fan_out_plain"]
    parent = task.enqueue(count=100, tick=0.02)  # the 8 jobs in flight end together

    wait_for_the_parent(db, parent.id, 100, timeout=30)

    spawned = children(db, parent.id)
    child_ids = [row[0] for row in spawned]
    assert [(state, attempt) for _, state, attempt in spawned] == [("complete", 1)] * 100
    pids = {pid for (pid,) in db.rows("SELECT DISTINCT pid FROM executions")}
    assert pids == {worker.pid for worker in workers}, "both workers ran children"
    runs = callbacks(db, parent.id)
    if callback:
        assert sorted(key for _, _, key, _, _ in runs) == sorted(
            f"child:{child}:1" for child in child_ids
        ), "exactly one callback job per child"
        assert {(task, state, attempt) for _, task, _, state, attempt in runs} == {
            ("fan_out_child_done", "complete", 1)
        }
        assert db.rows("SELECT child_id FROM child_effects ORDER BY child_id") == [
            (child,) for child in child_ids
        ]
        assert db.rows("SELECT child_id FROM callback_runs ORDER BY child_id") == [
            (child,) for child in child_ids
        ], "each callback ran once"
    else:
        assert runs == []
        assert db.rows("SELECT * FROM child_effects") == []
    assert [(old, new) for old, new, _ in transitions(db, parent.id)] == [
        ("pending", "running"),
        ("running", "waiting"),
        ("waiting", "complete"),
    ]
    assert_ended_once_after_its_subtree(db, parent.id)
    assert db.states() == {"complete": 1 + 100 + (100 if callback else 0)}
