"""F15: parent and child jobs through a SIGKILL storm, on both engines.

A parent with many children (short 150, long 1,000), a parent with none, and a parent one of
whose children fails for good, run by supervised workers while one of them is SIGKILLed every
second (long: every 2 s). Afterwards: one committed callback per (parent, child); the parent
completes exactly once, after its last child and its last callback (or, if a child was on a
killed worker three times and so failed `lost`, the parent failed once, by its callback, after
that child); the childless parent completed at once; the failed child's parent failed
(`child_failed`, its callback raised Permanent); nothing is left pending, running or waiting;
and I1-I7 hold over the whole tree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from roadie import App
from tests.faults.harness import (
    EFFECT_TASKS,
    FaultDatabase,
    Figures,
    Sampler,
    Supervisor,
    check_invariants,
)
from tests.helpers import wait_until

LEASE = 2.0
SWEEP = 0.5


def finished(db: FaultDatabase, where: str, *params: Any) -> list[float]:
    """`finished_at` of the matching jobs, as unix seconds on both engines."""
    if db.sqlite:
        return [
            row[0] for row in db.rows(f"SELECT finished_at FROM roadie_jobs WHERE {where}", *params)
        ]
    return [
        row[0]
        for row in db.rows(
            f"SELECT extract(epoch FROM finished_at)::float8 FROM roadie_jobs WHERE {where}",
            *params,
        )
    ]


def test_f15_tree_storm(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
) -> None:
    # Long: the FAULTS.md storm (a random worker every 2 s, "F1-style"); short: every second.
    count, duration, every = (1_000, 60.0, 2.0) if long_form else (150, 5.0, 1.0)
    tree = tasks.tasks["tree"]
    big = tree.enqueue(children=count, ms=100, ms_max=300)
    empty = tree.enqueue(children=0)
    failing = tree.enqueue(children=3, ms=20, ms_max=80, fail=1)
    sup = supervisor(workers=3, concurrency=4, lease=f"{LEASE:g}s", sweep=f"{SWEEP:g}s")

    wait_until(
        lambda: fault_db.value("SELECT count(*) FROM executions") >= 4,
        timeout=30,
        what="workers up and running the tree",
    )
    end = time.monotonic() + duration
    kills = 0
    while time.monotonic() < end and fault_db.open_count():
        time.sleep(every)  # the fault schedule, not a wait for a condition
        sup.kill()
        kills += 1
    recovered = sup.wait_recovered(timeout=LEASE + SWEEP + 30)

    # A child that was on a killed worker three times fails `lost` (roadie's poison rule does
    # not know a bystander from a culprit); the parent's callback then fails it, as its
    # failed-child policy says. The big tree may end that way; checked below, either way.
    report = check_invariants(
        fault_db,
        [big.id, empty.id, failing.id],
        timeout=count * 0.2 / 12 * 4 + 60,
        sweep=SWEEP,
        supervisor=sup,
        sampler=sampler,
        effect_tasks=EFFECT_TASKS - {"tree"},  # a parent's effect commits with its handler
        allow_failed_under=[failing.id, big.id],
        allow_lost=True,
    )

    children = {
        job_id: (state, failure)
        for job_id, state, failure in fault_db.rows(
            "SELECT id, state, failure FROM roadie_jobs WHERE parent_id = ? AND task = 'child'",
            big.id,
        )
    }
    lost = sorted(job_id for job_id, (state, _) in children.items() if state != "complete")
    assert len(children) == count
    assert set(lost) <= set(report.details["lost"]), "a child ends complete, or lost thrice"
    callbacks = fault_db.rows(
        "SELECT child_id, child_state FROM callbacks WHERE parent_id = ?", big.id
    )
    called = [child for child, _ in callbacks]
    assert len(called) == len(set(called)), "never two callbacks for one child"
    assert {state for _, state in callbacks} <= {"complete"}
    parent = tasks.get_job(big.id)
    assert parent is not None
    assert fault_db.rows("SELECT attempt FROM effects WHERE job_id = ?", big.id) == [
        (parent.attempt,)
    ], "the parent's handler committed once"
    if not lost:
        # The whole tree: one callback per child, on_complete once after all of them.
        assert parent.state == "complete"
        assert sorted(called) == sorted(children), "one callback per child"
        assert fault_db.rows(
            "SELECT callbacks_seen FROM completions WHERE parent_id = ?", big.id
        ) == [(count,)], "on_complete ran once, after every callback"
        last = max(finished(fault_db, "parent_id = ?", big.id))
        assert finished(fault_db, "id = ?", big.id)[0] >= last, "not before its subtree"
    else:
        # Failed once, by the callback judging the first lost child; no on_complete.
        assert (parent.state, parent.failure) == ("failed", "child_failed")
        judged_child = next(j for j in lost if f"child {j} failed" in (parent.error or ""))
        assert (
            finished(fault_db, "id = ?", big.id)[0] >= finished(fault_db, "id = ?", judged_child)[0]
        ), "not before the child that failed it"
        assert set(called) <= {
            job_id for job_id, (state, _) in children.items() if state == "complete"
        }
        assert fault_db.value("SELECT count(*) FROM completions WHERE parent_id = ?", big.id) == 0

    # The childless parent completed when its handler returned: no waiting, no callbacks.
    alone = tasks.get_job(empty.id)
    assert alone is not None and alone.state == "complete"
    assert fault_db.value("SELECT count(*) FROM roadie_jobs WHERE parent_id = ?", empty.id) == 0

    # The failed child's parent: its callback raised Permanent, so it failed, child_failed.
    judged = tasks.get_job(failing.id)
    assert judged is not None and (judged.state, judged.failure) == ("failed", "child_failed")
    failed_kids = fault_db.rows(
        "SELECT id, failure FROM roadie_jobs WHERE parent_id = ? AND task = 'child'"
        " AND state = 'failed'",
        failing.id,
    )
    assert sorted(failure for _, failure in failed_kids if failure != "lost") == ["permanent"]
    assert fault_db.value("SELECT count(*) FROM completions WHERE parent_id = ?", failing.id) == 0

    assert fault_db.open_count() == 0, "nothing stuck"
    bound = LEASE + SWEEP + 10  # FAULTS.md: lease + sweep + 5 s; 5 s more for a loaded machine
    assert max(recovered, default=0) <= bound, f"jobs runnable again within {bound}s: {recovered}"
    assert kills >= 2 and sup.restarts >= kills, "the storm hit the tree while it ran"
    figures.record(
        jobs=report.jobs,
        children=count,
        faults=kills,
        extra_executions=report.extra_executions,
        lease_lost=report.lease_lost_lines,
        children_lost_thrice=len(lost),
        big_parent=parent.state,
        invariants="I1-I7 held",
    )
    for seconds in recovered:
        figures.recovery(seconds)
