"""F20 (SQLite): four worker processes on one WAL file, killed in the middle of transactions,
while another process reconnects ten times a second.

The workers die inside their completion transaction (the `complete.before_commit` failpoint:
the task's effect and the fenced completion are written, the write lock held, nothing
committed) and at random moments (a SIGKILL storm), and the supervisor restarts them. A
separate process opens an App, enqueues a job and closes it again, ~10 times a second. Nothing
may see "database is locked": not the job code, not the workers' logs, not a job's error, not
the enqueuing process; every job whose enqueue returned exists and ends complete (or failed
`lost`, a bystander of three crashes); I1-I6 hold.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from roadie import App
from tests.faults.harness import (
    ROOT,
    FaultDatabase,
    Figures,
    Sampler,
    Supervisor,
    check_invariants,
)

LEASE = 2.0
SWEEP = 0.5
LOCKED = "database is locked"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_f20_sqlite_kills_mid_transaction_and_reconnects(
    db_url: str,
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
    tmp_path: Path,
) -> None:
    if long_form:
        count, duration, chance, ms = 20_000, 60.0, 0.002, (0, 5)
    else:
        count, duration, chance, ms = 250, 4.0, 0.03, (10, 40)
    jobs = tasks.tasks["work"].enqueue_many([{"ms": ms[0], "ms_max": ms[1]} for _ in range(count)])
    failpoints = tmp_path / "failpoints.log"
    sup = supervisor(
        workers=4,
        concurrency=4,
        lease=f"{LEASE:g}s",
        sweep=f"{SWEEP:g}s",
        env={
            "ROADIE_FAILPOINTS": f"complete.before_commit={chance}",
            "ROADIE_FAILPOINT_LOG": str(failpoints),
        },
    )
    enqueuer_out = tmp_path / "enqueuer.out"
    with open(enqueuer_out, "wb") as out:
        enqueuer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tests.faults.workload import enqueue_loop;"
                " enqueue_loop(sys.argv[1], float(sys.argv[2]), 10.0)",
                db_url,
                str(duration),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        end = time.monotonic() + duration
        kills = 0
        while time.monotonic() < end:
            time.sleep(1.0)  # the fault schedule, not a wait for a condition
            sup.kill()
            kills += 1
        assert enqueuer.wait(duration + 30) == 0, enqueuer_out.read_text()
    finally:
        if enqueuer.poll() is None:
            enqueuer.kill()
            enqueuer.wait(10)
    lines = enqueuer_out.read_text().splitlines()
    errors = [line for line in lines if not line.isdigit()]
    enqueued = [int(line) for line in lines if line.isdigit()]

    report = check_invariants(
        fault_db,
        [job.id for job in jobs] + enqueued,
        timeout=count * 0.05 + 60,
        sweep=SWEEP,
        supervisor=sup,
        sampler=sampler,
        allow_lost=True,
    )

    assert errors == [], "the reconnecting process never failed"
    assert len(enqueued) >= duration * 10 * 0.3, "it did reconnect many times a second"
    assert report.jobs == count + len(enqueued), "every committed job is there"
    assert report.states.get("complete", 0) + len(report.details["lost"]) == report.jobs
    crashes = failpoints.read_text().splitlines() if failpoints.exists() else []
    assert crashes, "workers died holding the write lock"
    assert not sup.log_lines(LOCKED), "no lock error in the workers' logs"
    stored = fault_db.rows(
        "SELECT id FROM roadie_jobs WHERE error LIKE ? OR attempts LIKE ?",
        f"%{LOCKED}%",
        f"%{LOCKED}%",
    )
    assert stored == [], "no job error mentions a lock"
    figures.record(
        jobs=report.jobs,
        enqueued_by_reconnecting_process=len(enqueued),
        faults=kills + len(crashes),
        kills=kills,
        killed_mid_transaction=len(crashes),
        restarts=sup.restarts,
        extra_executions=report.extra_executions,
        failed_lost_bystanders=len(report.details["lost"]),
        invariants="I1-I6 held",
    )
