"""F5 and F6: the database goes away under steady load, and comes back (PostgreSQL).

F5 crashes the server (`pg_ctl stop -m immediate`, then start: what `pg_ctl restart -m
immediate` does, with the database down a while in between); F6 kills the workers' connections
(`pg_terminate_backend` on roadie's application_name, on this test's database only) again and
again. Both run on the module's throwaway cluster (netfaults.py), never on the shared server.

What must hold (FAULTS.md): no worker process exits or hangs (the supervisor restarts none);
processing resumes within 5 s of the database being reachable (measured from the moment the
server accepts connections to the first completion after it; asserted with slack, reported);
the jobs that were running at the crash are recovered by lease expiry; I1-I6 (and I4/I7 as
sampled). And a worker whose heartbeat keeps failing past its self-fence gives its job up
itself, before the lease runs out in the database (solid_queue#778).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from roadie import App
from tests.faults import dbworkload, netfaults
from tests.faults.dbworkload import APP
from tests.faults.harness import (
    EFFECT_TASKS,
    FaultDatabase,
    Figures,
    Sampler,
    Supervisor,
    check_invariants,
)
from tests.faults.netfaults import completed, job_of, log_time, reconnect, terminate_backends
from tests.faults.pgcluster import PgCluster
from tests.helpers import wait_until

pg_cluster = netfaults.pg_cluster  # the module's throwaway cluster (fixture)
db_url = netfaults.db_url  # every test's database is on it (fixture)
RESUME_BOUND = 5.0  # FAULTS.md: processing resumes <= 5 s after the database is reachable
SLACK = 10.0  # a loaded 2-core machine: the bound is asserted with this much extra


def _enqueue(tasks: App, count: int, long_form: bool = False) -> list[int]:
    """`count` short jobs: 5-30 ms each, or 100-300 ms in the long form, so the 10,000 jobs
    of 8 workers x 4 last past the fault (a crash at 20 s, a 60 s storm)."""
    ms, ms_max = (100, 300) if long_form else (5, 30)
    jobs = tasks.get_task("work").enqueue_many([{"ms": ms, "ms_max": ms_max}] * count)
    return [job.id for job in jobs]


def _lost_attempts(
    db: FaultDatabase, running: dict[int, int]
) -> tuple[list[tuple[int, int]], list[str]]:
    """Of the attempts running at the crash, those that ended 'lost' (reclaimed after their
    lease ran out); and any that ended otherwise than lost or complete."""
    jobs = db.jobs(running)
    lost: list[tuple[int, int]] = []
    odd = []
    for job_id, attempt in running.items():
        outcome = next(
            (a.get("outcome") for a in jobs[job_id].attempts if a.get("attempt") == attempt), None
        )
        if outcome == "lost":
            lost.append((job_id, attempt))
        elif outcome not in ("complete", "retry"):
            odd.append(f"job {job_id} attempt {attempt}: {outcome}")
    return lost, odd


def _resumption(db: FaultDatabase) -> tuple[float, float | None]:
    """On the database's clock: seconds from the server's (re)start to the first completion
    after it, and to the first 1-s window whose completions reach 80% of the rate of the 5 s
    before the crash (None if none did)."""
    first = db.value(
        "SELECT extract(epoch FROM min(finished_at) - pg_postmaster_start_time())::float8"
        " FROM roadie_jobs WHERE state = 'complete' AND finished_at > pg_postmaster_start_time()"
    )
    windows = dict(
        db.rows(
            "SELECT floor(extract(epoch FROM finished_at - pg_postmaster_start_time()))::int,"
            " count(*) FROM roadie_jobs WHERE state = 'complete'"
            " AND finished_at > pg_postmaster_start_time() - interval '60 seconds'"
            " GROUP BY 1"
        )
    )
    crash = max(s for s in windows if s < 0) if any(s < 0 for s in windows) else 0
    before = [windows.get(s, 0) for s in range(crash - 5, crash)]
    rate = sum(before) / max(len(before), 1)
    back = next((s + 1 for s in sorted(windows) if s >= 0 and windows[s] >= 0.8 * rate), None)
    assert first is not None, "no job completed after the restart: the queue ran dry before it"
    return float(first), None if back is None else float(back)


def test_f5_database_restart(
    pg_cluster: PgCluster,
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    figures: Figures,
    long_form: bool,
) -> None:
    """Crash PostgreSQL mid-drain and keep it down a while: every worker rides it out, resumes
    within seconds of the server's return, and the crash's in-flight jobs come back by lease
    expiry, each with one effect. (I4 is checked after the outage rather than sampled through
    it: see below.)"""
    count, workers, down, crash_at = (10_000, 8, 10.0, 20.0) if long_form else (2_000, 3, 2.0, 0)
    ids = _enqueue(tasks, count, long_form)
    sup = supervisor(workers=workers, concurrency=4, lease="2s", sweep="0.5s", app=APP)
    started = time.monotonic()
    if long_form:
        wait_until(lambda: time.monotonic() - started > crash_at, crash_at + 5, interval=0.2)
    else:
        wait_until(lambda: completed(fault_db) >= count // 4, 60, "a quarter done")
    up = pg_cluster.down_for(down)
    up.join(down + 90)
    # The claims in flight at the crash, as the restarted server has them: nothing has touched
    # them since (the workers are still backing off).
    reconnect(fault_db)
    running = dict(fault_db.rows("SELECT id, attempt FROM roadie_jobs WHERE state = 'running'"))
    # I4 as the sampler sees it cannot hold the moment the server returns: leases that ran
    # out during the outage are already older than sweep + 5 s. They must be reaped soon after.
    back = time.monotonic()
    wait_until(lambda: fault_db.orphan_leases(0.5) == 0, 60, "no orphaned lease")
    orphans_cleared = time.monotonic() - back

    report = check_invariants(fault_db, ids, timeout=120 if long_form else 60, supervisor=sup)
    lost, odd = _lost_attempts(fault_db, running)
    figures.record(
        jobs=count,
        workers=workers,
        down_s=down,
        running_at_crash=len(running),
        lost_at_crash=len(lost),
        extra_executions=report.extra_executions,
        lease_lost_lines=report.lease_lost_lines,
        restarts=sup.restarts,
        states=report.states,
    )
    resumed, back_to_rate = _resumption(fault_db)
    figures.record(throughput_back_s=back_to_rate, orphans_cleared_s=round(orphans_cleared, 2))
    figures.recovery(resumed)
    print(f"F5: resumed {resumed:.2f}s after the database was back; {report}; lost {len(lost)}")
    assert sup.restarts == 0, "a worker process exited when the database went away"
    assert orphans_cleared <= 0.5 + 5.0 + SLACK, f"orphaned leases for {orphans_cleared:.1f}s"
    assert resumed <= RESUME_BOUND + SLACK, f"processing resumed only {resumed:.1f}s after"
    assert running, "nothing was running at the crash: the test injected no fault"
    assert not odd, f"attempts in flight at the crash ended oddly: {odd}"
    assert lost, "no attempt in flight at the crash was recovered by lease expiry"
    # Each lost attempt whose handler had started ran again; a job claimed ahead and still
    # waiting in its worker's buffer at the crash had not run, so it runs once.
    started = set(fault_db.rows("SELECT job_id, attempt FROM executions"))
    assert report.extra_executions >= len([pair for pair in lost if pair in started])
    assert report.extra_executions <= len(running) + report.lease_lost_lines


def test_f6_connections_terminated(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
) -> None:
    """Kill every connection of the workers every ~1 s for 8 s (every 3 s for 60 s in the long
    form) while they drain: they reconnect, no process exits, the next completion follows each
    kill within seconds, every job ends once with one effect."""
    count, workers, every, storm = (10_000, 8, 3.0, 60.0) if long_form else (1_500, 3, 1.0, 8.0)
    ids = _enqueue(tasks, count, long_form)
    sup = supervisor(workers=workers, concurrency=4, lease="2s", sweep="0.5s", app=APP)
    wait_until(lambda: completed(fault_db) > 0, 30, "the first completion")
    started = time.monotonic()
    kills, terminated, gaps = 0, 0, []
    while True:
        if time.monotonic() - started > storm or fault_db.open_count() == 0:
            break
        before = completed(fault_db)
        terminated += terminate_backends(fault_db)
        kills += 1
        killed_at = time.monotonic()
        # How long until the next completion: the workers' reconnection, as seen from outside.
        wait_until(lambda b=before: completed(fault_db) > b or fault_db.open_count() == 0, 60)
        gaps.append(time.monotonic() - killed_at)
        time.sleep(max(0.0, every * random.uniform(0.8, 1.2) - gaps[-1]))

    report = check_invariants(
        fault_db, ids, timeout=120 if long_form else 60, supervisor=sup, sampler=sampler
    )
    figures.record(
        jobs=count,
        workers=workers,
        terminations=kills,
        backends_terminated=terminated,
        extra_executions=report.extra_executions,
        lease_lost_lines=report.lease_lost_lines,
        restarts=sup.restarts,
        states=report.states,
    )
    for gap in gaps:
        figures.recovery(gap)
    print(f"F6: {kills} rounds, {terminated} backends terminated; {report}; gaps {gaps[:20]}")
    assert kills >= 2 and terminated > 0, "the storm never hit a worker connection"
    assert sup.restarts == 0, "a worker process exited when its connections were killed"
    assert max(gaps) <= RESUME_BOUND + SLACK


def test_f6_heartbeat_failing_gives_the_job_up(
    pg_cluster: PgCluster,
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    tmp_path: Path,
) -> None:
    """While a worker's connections are killed and new ones refused (pg_hba rejects TCP from
    loopback, reloaded), its heartbeat fails; once that has lasted past the self-fence it gives
    its jobs up itself, before their leases run out in the database. When connections are
    allowed again, the jobs are reclaimed and complete once."""
    lease = 3.0
    jobs = tasks.get_task("long_job").enqueue_many([{"seconds": 2 * lease}] * 2)
    ids = [job.id for job in jobs]
    sup = supervisor(workers=1, concurrency=2, lease=f"{lease:g}s", sweep="0.5s", app=APP)
    wait_until(lambda: fault_db.count("running") == 2, 30, "both jobs running")
    leases = dict(fault_db.rows("SELECT id, lock_expires_at FROM roadie_jobs"))
    hba = pg_cluster.data / "pg_hba.conf"
    original = hba.read_text()
    # The test's own connection uses TCP too: keep one open (terminate spares it) meanwhile.
    try:
        hba.write_text("host all all 127.0.0.1/32 reject\n" + original)
        pg_cluster.reload()
        cut = time.time()
        terminate_backends(fault_db)
        given_up = wait_until(
            lambda: (
                [line for line in sup.lease_lost_lines() if "given up" in line]
                if len([line for line in sup.lease_lost_lines() if "given up" in line]) >= 2
                else None
            ),
            3 * lease,
            "the worker giving both jobs up",
        )
        # The leases the database still holds were last renewed before the cut; each job was
        # given up before its lease (as renewed then) ran out.
        renewed = dict(fault_db.rows("SELECT id, lock_expires_at FROM roadie_jobs"))
    finally:
        hba.write_text(original)
        pg_cluster.reload()
    for line in given_up:
        found = job_of(line)
        at = log_time(line)
        assert found is not None and at is not None, line
        deadline = renewed[found[0]].timestamp()
        assert deadline >= leases[found[0]].timestamp()
        assert at < deadline, f"given up {at - deadline:.2f}s after its lease ran out: {line}"
        assert at > cut, line
    report = check_invariants(fault_db, ids, timeout=60, supervisor=sup, sampler=sampler)
    finals = fault_db.jobs(ids)
    assert all(job.attempt >= 2 for job in finals.values()), "a given-up attempt completed"
    assert report.lease_lost_lines >= 2
    assert sup.restarts == 0


def test_lost_completion_transaction_never_completes_without_its_writes(
    pg_cluster: PgCluster,
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    tmp_path: Path,
) -> None:
    """A job's completion transaction dies with its connection, and the database then refuses
    connections for a while (shorter than the self-fence): the worker retries its write, and
    the retry must not complete the job without the writes the lost transaction carried (I2).
    It records a retry instead; attempt 2 completes with its effect."""
    gate = tmp_path / "gate"
    with dbworkload.build(fault_db.url) as app:
        job = app.enqueue("gated", {"gate": str(gate)})
    sup = supervisor(workers=1, concurrency=1, lease="30s", sweep="0.5s", app=APP)
    wait_until(lambda: Path(f"{gate}.1.waiting").exists(), 30, "the effect written, uncommitted")
    with _refusing_connections(pg_cluster):
        terminate_backends(fault_db)  # the completion transaction's connection too
        gate.touch()  # the task returns; its completion meets the lost transaction
        # Refused until the retried write has failed too (the pool gives up after 5 s): the
        # write after that is the one that must remember the lost transaction.
        wait_until(
            lambda: len(sup.log_lines("recording its outcome failed")) >= 2,
            30,
            "a completion that failed twice",
        )
    report = check_invariants(
        fault_db, [job.id], timeout=60, supervisor=sup, effect_tasks={*EFFECT_TASKS, "gated"}
    )
    final = fault_db.jobs([job.id])[job.id]
    assert final.state == "complete" and final.attempt == 2, final
    assert report.effects == 1
    assert sup.restarts == 0


@contextlib.contextmanager
def _refusing_connections(cluster: PgCluster) -> Iterator[None]:
    """PostgreSQL refuses new TCP connections from loopback (pg_hba.conf, reloaded) meanwhile;
    open connections (the test's) carry on."""
    hba = cluster.data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all all 127.0.0.1/32 reject\n" + original)
    cluster.reload()
    try:
        yield
    finally:
        hba.write_text(original)
        cluster.reload()
