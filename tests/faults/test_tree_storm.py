"""F15: parent and child jobs through a SIGKILL storm, on both engines.

A parent with many children (short 150, long 1,000), a parent with none, and a parent one of
whose children fails for good, run by supervised workers while one of them is SIGKILLed every
second. Afterwards: one committed callback per (parent, child); the parent completes exactly
once, after its last child and its last callback; the childless parent completed at once; the
failed child's parent failed (`child_failed`, its callback raised Permanent); nothing is left
pending, running or waiting; and I1-I7 hold over the whole tree.
"""

from __future__ import annotations

import time
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
    supervisor: type[Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
) -> None:
    count, duration = (1_000, 30.0) if long_form else (150, 5.0)
    tree = tasks.tasks["tree"]
    big = tree.enqueue(children=count, ms=100, ms_max=300)
    empty = tree.enqueue(children=0)
    failing = tree.enqueue(children=3, ms=20, ms_max=80, fail=1)
    sup = supervisor(workers=3, concurrency=4, lease=f"{LEASE:g}s", sweep=f"{SWEEP:g}s")

    end = time.monotonic() + duration
    kills = 0
    while time.monotonic() < end and fault_db.open_count():
        time.sleep(1.0)  # the fault schedule, not a wait for a condition
        sup.kill()
        kills += 1
    recovered = sup.wait_recovered(timeout=LEASE + SWEEP + 30)

    report = check_invariants(
        fault_db,
        [big.id, empty.id, failing.id],
        timeout=count * 0.2 / 12 * 4 + 60,
        sweep=SWEEP,
        supervisor=sup,
        sampler=sampler,
        effect_tasks=EFFECT_TASKS - {"tree"},  # a parent's effect commits with its handler
        allow_failed_under=[failing.id],
    )

    # The big parent: one callback per child, completed once, after all of them.
    children = {
        job_id: state
        for job_id, state in fault_db.rows(
            "SELECT id, state FROM roadie_jobs WHERE parent_id = ? AND task = 'child'", big.id
        )
    }
    assert len(children) == count and set(children.values()) == {"complete"}
    callbacks = fault_db.rows(
        "SELECT child_id, child_state FROM callbacks WHERE parent_id = ?", big.id
    )
    assert sorted(child for child, _ in callbacks) == sorted(children), "one callback per child"
    assert {state for _, state in callbacks} == {"complete"}
    assert fault_db.rows("SELECT callbacks_seen FROM completions WHERE parent_id = ?", big.id) == [
        (count,)
    ], "on_complete ran once, after every callback"
    parent = tasks.get_job(big.id)
    assert parent is not None and parent.state == "complete"
    last_below = max(finished(fault_db, "parent_id = ?", big.id))
    assert finished(fault_db, "id = ?", big.id)[0] >= last_below, "not before its subtree"
    assert fault_db.rows("SELECT attempt FROM effects WHERE job_id = ?", big.id) == [
        (parent.attempt,)
    ]

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
    assert [failure for _, failure in failed_kids] == ["permanent"]
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
        invariants="I1-I7 held",
    )
    for seconds in recovered:
        figures.recovery(seconds)
