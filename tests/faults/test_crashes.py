"""Process crashes under real workers: SIGKILL storms (F1), a paused worker (F2), long and
GIL-holding jobs (F3), crashes at each point of a job's completion (F4), a poison job (F9).

Each test runs on SQLite and PostgreSQL, in its short form by default (seconds) and in the
FAULTS.md sizes with ROADIE_FAULTS=long (`make test-faults`), which also writes its figures to
bench/results/faults/. Every test ends with the invariants I1-I7 (tests/faults/harness.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadie import App
from tests.faults.harness import (
    FaultDatabase,
    Figures,
    Sampler,
    Supervisor,
    check_invariants,
)
from tests.helpers import wait_until

LEASE = 2.0
SWEEP = 0.5


def storm(sup: Supervisor, db: FaultDatabase, every: float, duration: float) -> int:
    """SIGKILL a random worker every `every` s for `duration` s, while jobs remain; how many.
    (Sleeping is the fault schedule here, not a wait for a condition.)"""
    end = time.monotonic() + duration
    kills = 0
    while time.monotonic() < end and db.open_count():
        time.sleep(every)
        sup.kill()
        kills += 1
    return kills


def test_f1_sigkill_storm(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
) -> None:
    """Random workers SIGKILLed every second (long: 2 s) while jobs run: every job completes,
    each effect once, and the extra executions are no more than the jobs the killed workers
    held (plus any job a worker logged as given up: a late heartbeat on a loaded machine)."""
    if long_form:
        count, workers, slots, every, duration, ms = 10_000, 4, 8, 2.0, 60.0, (50, 500)
    else:
        count, workers, slots, every, duration, ms = 300, 3, 4, 1.0, 3.0, (50, 150)
    jobs = tasks.tasks["work"].enqueue_many([{"ms": ms[0], "ms_max": ms[1]} for _ in range(count)])
    sup = supervisor(workers=workers, concurrency=slots, lease=f"{LEASE:g}s", sweep=f"{SWEEP:g}s")
    started = time.monotonic()
    wait_until(
        lambda: fault_db.value("SELECT count(*) FROM executions") >= slots,
        timeout=30,
        what="workers up and running jobs",
    )
    kills = storm(sup, fault_db, every, duration)
    recovered = sup.wait_recovered(timeout=LEASE + SWEEP + 30)
    work = count * (ms[0] + ms[1]) / 2 / 1000 / (workers * slots)
    report = check_invariants(
        fault_db,
        [job.id for job in jobs],
        timeout=4 * work + LEASE + SWEEP + 30,
        sweep=SWEEP,
        supervisor=sup,
        sampler=sampler,
        allow_lost=True,
    )
    drained = time.monotonic() - started

    assert kills >= 1 and sup.restarts >= kills, "the storm killed and the supervisor restarted"
    lost = report.details["lost"]
    assert report.states == {
        "complete": count - len(lost),
        **({"failed": len(lost)} if lost else {}),
    }
    held = sum(kill.held for kill in sup.kills)
    assert report.extra_executions <= held + report.lease_lost_lines, (
        f"{report.extra_executions} extra executions, {held} jobs held by killed workers, "
        f"{report.lease_lost_lines} given up"
    )
    bound = LEASE + SWEEP + 10  # FAULTS.md: lease + sweep + 5 s; 5 s more for a loaded machine
    assert recovered, f"some kill hit a worker running jobs: {sup.kills}"
    assert max(recovered) <= bound, f"jobs runnable again within {bound}s: {recovered}"
    figures.record(
        jobs=count,
        workers=workers,
        slots=slots,
        faults=kills,
        restarts=sup.restarts,
        jobs_held_at_kills=held,
        extra_executions=report.extra_executions,
        lease_lost=report.lease_lost_lines,
        failed_lost_bystanders=len(lost),
        drained_s=round(drained, 1),
        invariants="I1-I7 held",
    )
    for seconds in recovered:
        figures.recovery(seconds)


def test_f2_sigstop_past_the_lease(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
) -> None:
    """A worker paused (SIGSTOP) mid-job for longer than its lease: the job is reclaimed
    elsewhere (attempt 2). Resumed (SIGCONT) while attempt 2 still runs, the zombie finishes
    its attempt 1, effect included: its completion changes no row (refused by the fence, or
    dropped by the worker's self-fence first), the worker logs the lease lost; attempt 2
    completes; one effect."""
    args = {"lease": f"{LEASE:g}s", "sweep": f"{SWEEP:g}s"}
    paused = supervisor(workers=1, concurrency=1, **args)
    job = tasks.tasks["work"].enqueue(ms=3000)
    wait_until(lambda: fault_db.rows("SELECT pid FROM executions"), timeout=20, what="job started")
    stopped_at = time.monotonic()
    pid = paused.sigstop_between_transactions(0)
    rescuer = supervisor(workers=1, concurrency=1, **args)
    wait_until(
        lambda: fault_db.rows("SELECT 1 FROM executions WHERE attempt = 2"),
        timeout=LEASE * 3 + SWEEP + 20,
        what="job reclaimed and started again by the other worker",
    )
    recovered = time.monotonic() - stopped_at
    # Attempt 1 has slept its 3 s (it was stopped for more than a lease): resumed, it writes
    # its completion at once, while attempt 2 sleeps.
    paused.sigcont(0)
    # Either the completion reaches the database and its fence refuses it ("lease lost
    # (LeaseLost), result discarded"), or the worker's self-fence gives the job up first on
    # resuming (its monotonic clock shows the lease long gone) and the completion is dropped
    # ("given up", then "result discarded (job was given up)"). Either way: logged, no write.
    wait_until(
        lambda: [
            line
            for line in paused.log_lines("result discarded")
            if f"job {job.id} attempt 1" in line
        ],
        timeout=20,
        what="the resumed worker's completion discarded, and logged",
        detail=paused.logs,
    )
    assert fault_db.value("SELECT count(*) FROM effects") == 0, "the zombie's effect rolled back"
    wait_until(
        lambda: fault_db.value("SELECT state FROM roadie_jobs WHERE id = ?", job.id) == "complete",
        timeout=20,
        what="attempt 2 completes",
    )

    report = check_invariants(
        fault_db, [job.id], timeout=10, sweep=SWEEP, supervisor=paused, sampler=sampler
    )
    done = tasks.get_job(job.id)
    assert done is not None and done.attempt == 2
    assert [(a["attempt"], a["outcome"]) for a in done.attempts] == [(1, "lost"), (2, "complete")]
    starts = fault_db.rows("SELECT attempt, pid FROM executions ORDER BY attempt")
    assert starts == [(1, pid), (2, rescuer.pid(0))]
    assert fault_db.rows("SELECT job_id, attempt FROM effects") == [(job.id, 2)]
    assert report.lease_lost_lines >= 1
    assert any(f"job {job.id} attempt 1" in line for line in paused.lease_lost_lines())
    assert paused.pids() == [pid], "the zombie lived on; it did not crash"
    figures.record(jobs=1, faults=1, extra_executions=report.extra_executions)
    figures.recovery(recovered)


def test_f9_poison_job_fails_after_three_lost_attempts(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
) -> None:
    """A job that kills its worker on every attempt, among normal jobs: it fails (`lost`) after
    3 lost attempts, never requeued again, and every other job completes."""
    count = 5_000 if long_form else 100
    normal = tasks.tasks["work"].enqueue_many([{"ms": 10, "ms_max": 50} for _ in range(count)])
    poison = tasks.tasks["poison"].enqueue()
    lease = 1.0  # three leases to wait out: a short one keeps the short form short
    sup = supervisor(workers=2, concurrency=4, lease=f"{lease:g}s", sweep=f"{SWEEP:g}s")

    report = check_invariants(
        fault_db,
        [job.id for job in normal] + [poison.id],
        timeout=3 * (lease + SWEEP) + count * 0.03 / 8 * 4 + 30,
        sweep=SWEEP,
        supervisor=sup,
        sampler=sampler,
        allow_failed=[poison.id],
        allow_lost=True,
    )
    failed = tasks.get_job(poison.id)
    assert failed is not None
    assert (failed.state, failed.failure, failed.attempt) == ("failed", "lost", 3)
    assert [a["outcome"] for a in failed.attempts] == ["lost", "lost", "lost"]
    assert fault_db.value("SELECT count(*) FROM executions WHERE job_id = ?", poison.id) == 3
    # Jobs that ran beside the poison job in its process were lost with it; claimed again in
    # the same batch (their ids are the lowest due), some share all three of its crashes and
    # fail `lost` too. Any such job must have run in the poison's processes only.
    bystanders = [job_id for job_id in report.details["lost"] if job_id != poison.id]
    poison_pids = {
        pid for (pid,) in fault_db.rows("SELECT pid FROM executions WHERE job_id = ?", poison.id)
    }
    for job_id in bystanders:
        pids = {
            pid for (pid,) in fault_db.rows("SELECT pid FROM executions WHERE job_id = ?", job_id)
        }
        assert pids <= poison_pids, f"job {job_id} was lost only where the poison ran"
    assert report.states == {"complete": count - len(bystanders), "failed": 1 + len(bystanders)}
    assert len(bystanders) < 2 * 4, "at most the poison's neighbours in one claim"
    assert sup.restarts == 3, "the poison job killed its worker once per attempt, no more"
    figures.record(
        jobs=count + 1,
        faults=3,
        failed_lost_bystanders=len(bystanders),
        extra_executions=report.extra_executions,
    )


def test_f3_long_job_keeps_its_lease_and_a_gil_hog_is_fenced(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
) -> None:
    """F3, both variants at once (1 s leases, so the short form stays short):
    - a job running 10 leases on a healthy worker is never reclaimed: attempt 1, one start;
    - a job holding the GIL in one C call for 3 leases (`sum(range(n))`) starves its worker's
      heartbeat thread: its lease runs out, another worker reclaims and completes it (attempt 2),
      and the hog's own completion afterwards is refused (I3), the worker logging it."""
    lease = 1.0
    args = {"lease": f"{lease:g}s", "sweep": f"{SWEEP:g}s"}
    long_job = tasks.tasks["long_job"].enqueue(seconds=10 * lease)
    healthy = supervisor(workers=1, concurrency=1, **args)
    wait_until(
        lambda: fault_db.rows("SELECT 1 FROM executions WHERE job_id = ?", long_job.id),
        timeout=20,
        what="the long job started",
    )
    # The healthy worker's one slot is taken: the hog goes to the other worker, and the healthy
    # worker's reaper (a thread of its own) is the one that can see the hog's lease run out.
    hogger = supervisor(workers=1, concurrency=1, **args)
    hog = tasks.tasks["gil_hog"].enqueue(seconds=3 * lease)
    report = check_invariants(
        fault_db,
        [hog.id, long_job.id],
        timeout=10 * lease + 30,
        sweep=SWEEP,
        supervisor=hogger,
        sampler=sampler,
    )
    wait_until(
        lambda: hogger.lease_lost_lines(),
        timeout=10,
        what="the hog's worker logs its lease lost",
        detail=hogger.logs,
    )

    done = tasks.get_job(long_job.id)
    assert done is not None and (done.state, done.attempt) == ("complete", 1)
    assert fault_db.rows("SELECT attempt, pid FROM executions WHERE job_id = ?", long_job.id) == [
        (1, healthy.pid(0))
    ]
    rescued = tasks.get_job(hog.id)
    assert rescued is not None
    assert [(a["attempt"], a["outcome"]) for a in rescued.attempts] == [
        (1, "lost"),
        (2, "complete"),
    ]
    hog_starts = fault_db.rows(
        "SELECT attempt, pid FROM executions WHERE job_id = ? ORDER BY attempt", hog.id
    )
    assert hog_starts[0] == (1, hogger.pid(0)) and hog_starts[1][0] == 2 and len(hog_starts) == 2
    assert dict(fault_db.rows("SELECT job_id, attempt FROM effects")) == {
        long_job.id: 1,
        hog.id: 2,
    }
    assert any(f"job {hog.id} attempt 1" in line for line in hogger.lease_lost_lines())
    figures.record(jobs=2, faults=1, lease_lost=report.lease_lost_lines)


def _failpoint_log(path: Path) -> dict[str, list[tuple[int, int]]]:
    """The failpoint log: point name -> the (job id, attempt) pairs it crashed on."""
    found: dict[str, list[tuple[int, int]]] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        name, *pairs = line.split()
        for pair in pairs:
            job_id, attempt = pair.split(":")
            found.setdefault(name, []).append((int(job_id), int(attempt)))
    return found


def test_f4_crash_points_of_a_completion(
    fault_db: FaultDatabase,
    tasks: App,
    supervisor: Callable[..., Supervisor],
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
    tmp_path: Path,
) -> None:
    """A worker SIGKILLed (a) before the job's effect, (b) after the effect but before the
    commit (the task's own crash and the `complete.before_commit` failpoint), (c) after the
    commit (`complete.after_commit`): (a)/(b) are retried and their effect exists once, from
    the final attempt; (c) stays complete with no rerun."""
    count, crashing, chance = (1_000, 50, 0.03) if long_form else (100, 5, 0.08)
    args: list[dict[str, Any]] = [{"ms": 5, "ms_max": 30} for _ in range(count)]
    for index in range(crashing):
        args[index]["crash"] = "before_effect"
        args[count - 1 - index]["crash"] = "after_effect"
    jobs = tasks.tasks["work"].enqueue_many(args)
    log = tmp_path / "failpoints.log"
    sup = supervisor(
        workers=3,
        concurrency=3,
        lease="1s",  # each crash's jobs wait out a lease: a short one keeps the test short
        sweep=f"{SWEEP:g}s",
        env={
            "ROADIE_FAILPOINTS": f"complete.before_commit={chance},complete.after_commit={chance}",
            "ROADIE_FAILPOINT_LOG": str(log),
        },
    )
    report = check_invariants(
        fault_db,
        [job.id for job in jobs],
        timeout=count * 0.5 + 60,
        sweep=SWEEP,
        supervisor=sup,
        sampler=sampler,
        allow_lost=True,
    )
    points = _failpoint_log(log)

    lost = set(report.details["lost"])  # lost with three crashing neighbours: failed, no effect
    assert report.states.get("complete", 0) + len(lost) == count
    final = dict(fault_db.rows("SELECT id, attempt FROM roadie_jobs"))
    starts = dict(fault_db.rows("SELECT job_id, max(attempt) FROM executions GROUP BY job_id"))
    effects = dict(fault_db.rows("SELECT job_id, attempt FROM effects"))
    crashed = {
        "before_effect": [(job.id, 1) for job in jobs[:crashing]],
        "after_effect": [(job.id, 1) for job in jobs[count - crashing :]],
        "complete.before_commit": points.get("complete.before_commit", []),
    }
    for point, pairs in crashed.items():
        for job_id, attempt in pairs:
            if job_id in lost:
                assert job_id not in effects
                continue
            assert final[job_id] > attempt, f"{point}: job {job_id} retried after the crash"
            assert effects[job_id] == final[job_id], f"{point}: job {job_id} effect once, final"
    after = points.get("complete.after_commit", [])
    for job_id, attempt in after:
        assert final[job_id] == attempt, f"after_commit: job {job_id} stayed complete"
        assert starts[job_id] == attempt, f"after_commit: job {job_id} not run again"
        assert effects[job_id] == attempt
    assert points.get("complete.before_commit") and after, f"both failpoints fired: {points}"
    # Each failpoint line is one process that died (an after_commit crash in the completer
    # ends a whole batch); the task's own crashes add more (not one per crashing job: one lost
    # beside another crash runs its attempt 2 without crashing).
    crash_lines = log.read_text().splitlines()
    assert sup.restarts > len(crash_lines)
    figures.record(
        jobs=count,
        faults=sup.restarts,
        crashing_jobs={"before_effect": crashing, "after_effect": crashing},
        failpoint_crashes={
            "complete.before_commit": len(crashed["complete.before_commit"]),
            "complete.after_commit": len(after),
        },
        extra_executions=report.extra_executions,
        failed_lost_bystanders=len(lost),
        invariants="I1-I7 held",
    )
