"""The fault-injection harness: real worker processes under a supervisor, and the invariants.

API (stable; the other fault test files import it — add to it, don't rename):

- `FaultDatabase(url)`: plain SQL on the test's database (`?` placeholders, autocommit; a
  `tests.processes.helpers.Database`), plus `create_tables()` (executions, effects, callbacks,
  completions: see tests/faults/workload.py), `backend` ("sqlite" | "postgres"), `jobs(ids)`
  (id -> `JobRow`), `terminal_count(ids)`, `running_locked_by(pid)`.
- `Supervisor(url, log_dir, workers=3, concurrency=4, lease="2s", sweep="0.5s", env=None,
  extra_args=(), app=APP)`: starts `workers` real `roadie worker` processes, each its own process
  group; a monitor thread restarts any that exits (like a process manager) until `close()`.
  `start()`, `kill(index=None, sig=SIGKILL)` (a random live worker by default; returns the
  `Kill` recorded: pid, time, jobs it held then), `sigstop(index)`,
  `sigstop_between_transactions(index)` (when no connection holds a transaction), `sigcont(index)`,
  `pids()`, `restarts`, `kills`, `logs()` (every process's log so far, in start order),
  `lease_lost_lines()` ("lease lost (LeaseLost)" lines the workers logged), `log_lines(text)`,
  `wait_recovered(timeout)` (every kill's jobs runnable again; fills `Kill.recovered_after`),
  `close()` (SIGCONT + SIGKILL every process group it started, waits for them; idempotent).
  `env` adds to each worker's environment (e.g. `{"ROADIE_FAILPOINTS": "complete.after_commit=0.05",
  "ROADIE_FAILPOINT_LOG": path}`).
- `check_invariants(db, job_ids, *, timeout, sweep=0.5, supervisor=None, sampler=None,
  effect_tasks=EFFECT_TASKS, allow_failed=())` -> `Report`: waits (polling) until every job in
  `job_ids` (plus every job they caused: children, callbacks) is terminal, then checks I1-I7
  and raises `InvariantViolation` with every broken one spelled out. `allow_failed` lists job ids
  expected to end failed; any other failed or cancelled job breaks I1, except, with
  `allow_lost=True`, jobs failed `lost` after three lost attempts (bystanders of crashes:
  `Report.details["lost"]`), and the jobs in `allow_failed_under` and every job under them
  (children, callbacks) may end failed or cancelled. `Report` carries the counts (jobs,
  executions, extra executions, lease-lost lines, states).
- `Sampler(url, sweep)`: a thread checking I4 (no orphan lease) and I7 (no transaction of ours
  older than 5 s, PostgreSQL) every second while a test runs; `start()`, `stop()`,
  `violations`. `check_invariants(..., sampler=...)` stops it and fails on what it saw.
- `Figures(test, backend, long_form)`: the figures of a long-form run; `record(**values)`,
  `recovery(seconds)` (one recovery time), `write()` -> the path of
  `bench/results/faults/<test>-<backend>.json` (long form only; None otherwise).
- `percentile(values, p)`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.processes.helpers import Database, group_pids, others_in_transaction, process_state

ROOT = Path(__file__).resolve().parents[2]
ROADIE = Path(sys.executable).parent / "roadie"
APP = "tests.faults.workload:app"
RESULTS = ROOT / "bench" / "results" / "faults"
TERMINAL = ("complete", "failed", "cancelled")
EFFECT_TASKS = frozenset({"work", "long_job", "gil_hog", "child", "tree"})
I4_SLACK = 5.0  # seconds past the lease and a sweep before a running lease counts as orphaned
I7_LIMIT = 5.0  # seconds: our longest acceptable transaction
LEASE_LOST = "lease lost (LeaseLost)"


class InvariantViolation(AssertionError):
    """One or more of I1-I7 broke; the message lists each."""


@dataclass
class JobRow:
    id: int
    task: str
    state: str
    attempt: int
    max_attempts: int
    failure: str | None
    parent_id: int | None
    attempts: list[dict[str, Any]]
    error: str | None = None


class FaultDatabase(Database):
    """The test's database, with the workload's tables and the queries the invariants need."""

    @property
    def backend(self) -> str:
        return "sqlite" if self.sqlite else "postgres"

    def create_tables(self) -> None:
        """Empty executions / effects / callbacks / completions tables (see workload.py)."""
        for table in ("effects", "executions", "callbacks", "completions"):
            self.rows(f"DROP TABLE IF EXISTS {table}")
        self.rows("CREATE TABLE effects (job_id BIGINT PRIMARY KEY, attempt INTEGER NOT NULL)")
        self.rows("CREATE TABLE executions (job_id BIGINT, attempt INTEGER, pid INTEGER)")
        self.rows("CREATE TABLE callbacks (parent_id BIGINT, child_id BIGINT, child_state TEXT)")
        self.rows("CREATE TABLE completions (parent_id BIGINT, callbacks_seen INTEGER)")

    def jobs(self, ids: Iterable[int] | None = None) -> dict[int, JobRow]:
        """Every job (or those in `ids`), with its attempt records."""
        rows = self.rows(
            "SELECT id, task, state, attempt, max_attempts, failure, parent_id, attempts, error"
            " FROM roadie_jobs"
        )
        wanted = None if ids is None else set(ids)
        found = {}
        for row in rows:
            if wanted is not None and row[0] not in wanted:
                continue
            attempts = row[7] if isinstance(row[7], list) else json.loads(row[7] or "[]")
            found[row[0]] = JobRow(*row[:7], attempts=attempts, error=row[8])  # type: ignore[arg-type]
        return found

    def terminal_count(self, ids: Iterable[int] | None = None) -> int:
        """How many of the jobs (all, by default) are in a terminal state."""
        if ids is None:
            return self.value(
                "SELECT count(*) FROM roadie_jobs WHERE state IN ('complete','failed','cancelled')"
            )
        wanted = set(ids)
        return sum(
            1
            for (job_id,) in self.rows(
                "SELECT id FROM roadie_jobs WHERE state IN ('complete','failed','cancelled')"
            )
            if job_id in wanted
        )

    def open_count(self) -> int:
        """Jobs not yet terminal (pending, running or waiting)."""
        return self.value(
            "SELECT count(*) FROM roadie_jobs WHERE state IN ('pending','running','waiting')"
        )

    def running_locked_by(self, pid: int) -> int:
        """Running jobs leased to the worker process `pid` (worker ids are host:pid:hex)."""
        return self.value(
            "SELECT count(*) FROM roadie_jobs WHERE state = 'running' AND locked_by LIKE ?",
            f"%:{pid}:%",
        )

    def orphan_leases(self, sweep: float) -> int:
        """I4: running jobs whose lease ran out more than a sweep + 5 s ago."""
        slack = sweep + I4_SLACK
        if self.sqlite:
            return self.value(
                "SELECT count(*) FROM roadie_jobs WHERE state = 'running' AND lock_expires_at"
                " < (julianday('now') - 2440587.5) * 86400.0 - ?",
                slack,
            )
        return self.value(
            "SELECT count(*) FROM roadie_jobs WHERE state = 'running'"
            " AND lock_expires_at < now() - make_interval(secs => ?)",
            slack,
        )

    def long_transactions(self, limit: float = I7_LIMIT) -> list[tuple[Any, ...]]:
        """I7 (PostgreSQL): transactions on this database older than `limit` s, not ours here."""
        if self.sqlite:
            return []
        return self.rows(
            "SELECT pid, application_name, state, extract(epoch FROM now() - xact_start),"
            " left(query, 120) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend' AND xact_start IS NOT NULL"
            " AND xact_start < now() - make_interval(secs => ?)",
            limit,
        )


# -- worker processes --------------------------------------------------------------------------


@dataclass
class Kill:
    """One signal the supervisor sent to a worker."""

    pid: int
    signal: int
    at: float  # time.monotonic()
    held: int  # running jobs leased to that worker just after the signal
    recovered_after: float | None = None  # seconds until none of them was running there


class _Slot:
    """One worker position: the current process and its past ones."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_paths: list[Path] = []
        self.stopped = False  # SIGSTOPped by the test: not restarted, not waited for
        self.ended: int | None = None  # the pid whose death was handled (its group killed)


class Supervisor:
    """N real `roadie worker` processes, restarted whenever one exits, all killed at `close()`."""

    def __init__(
        self,
        url: str,
        log_dir: Path,
        *,
        workers: int = 3,
        concurrency: int = 4,
        lease: str = "2s",
        sweep: str = "0.5s",
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        app: str = APP,
        restart: bool = True,
    ) -> None:
        self.url = url
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.lease = lease
        self.env = {
            **os.environ,
            "ROADIE_DATABASE_URL": url,
            "PYTHONPATH": str(ROOT),
            "ROADIE_FAULTS_LEASE": lease,
            **(env or {}),
        }
        self.args = [
            "--concurrency",
            str(concurrency),
            "--lease",
            lease,
            "--sweep-interval",
            sweep,
            *extra_args,
        ]
        self.app = app
        self.restart = restart
        self.slots = [_Slot(i) for i in range(workers)]
        self.restarts = 0
        self.kills: list[Kill] = []
        self.all_pids: list[int] = []
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._monitor: threading.Thread | None = None
        self._tracker: threading.Thread | None = None
        self._spawned = 0
        self._db: FaultDatabase | None = None

    # -- lifecycle

    def start(self) -> Supervisor:
        """Start every worker and the monitor that restarts them."""
        with self._lock:
            for slot in self.slots:
                self._spawn(slot)
        self._monitor = threading.Thread(target=self._watch, name="fault-supervisor", daemon=True)
        self._monitor.start()
        self._tracker = threading.Thread(target=self._track, name="fault-recovery", daemon=True)
        self._tracker.start()
        return self

    def _spawn(self, slot: _Slot) -> None:
        path = self.log_dir / f"worker-{slot.index}-{self._spawned}.log"
        self._spawned += 1
        command = [str(ROADIE), "worker", "--app", self.app, *self.args]
        with open(path, "wb") as log:
            slot.popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        slot.log_paths.append(path)
        self.all_pids.append(slot.popen.pid)

    def _watch(self) -> None:
        while not self._closed.wait(0.1):
            with self._lock:
                if self._closed.is_set():
                    return
                for slot in self.slots:
                    if slot.popen is None or slot.stopped or slot.popen.poll() is None:
                        continue
                    if slot.ended == slot.popen.pid:
                        continue  # dead, handled, not restarted
                    _reap_group(slot.popen.pid)  # a dead leader's forked children go too
                    slot.ended = slot.popen.pid
                    if self.restart:
                        self.restarts += 1
                        self._spawn(slot)

    def close(self) -> None:
        """Stop the monitor and kill every process group this supervisor started (idempotent)."""
        self._closed.set()
        for thread in (self._monitor, self._tracker):
            if thread is not None:
                thread.join(5)
        with self._lock:
            for slot in self.slots:
                if slot.popen is None:
                    continue
                if slot.popen.poll() is not None and slot.ended == slot.popen.pid:
                    continue  # its group was killed when it died; the id may be reused since
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(slot.popen.pid, signal.SIGCONT)
                _reap_group(slot.popen.pid)
                slot.ended = slot.popen.pid
                with contextlib.suppress(subprocess.TimeoutExpired):
                    slot.popen.wait(10)
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults

    def pids(self) -> list[int]:
        """The pids of the worker processes alive now, by slot."""
        with self._lock:
            return [
                s.popen.pid for s in self.slots if s.popen is not None and s.popen.poll() is None
            ]

    def pid(self, index: int) -> int:
        popen = self.slots[index].popen
        assert popen is not None
        return popen.pid

    def kill(self, index: int | None = None, sig: int = signal.SIGKILL) -> Kill:
        """Send `sig` (SIGKILL by default) to the worker in slot `index`, or a random live one;
        SIGKILL is sent to its whole process group. Records and returns the `Kill`."""
        with self._lock:
            live = [s for s in self.slots if s.popen is not None and s.popen.poll() is None]
            if index is not None:
                slot = self.slots[index]
            elif live:
                slot = random.choice(live)
            else:
                raise AssertionError("no live worker to signal")
            assert slot.popen is not None
            pid = slot.popen.pid
            if sig == signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    slot.popen.wait(5)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            at = time.monotonic()
        held = self.database.running_locked_by(pid)
        kill = Kill(pid, sig, at, held)
        self.kills.append(kill)
        return kill

    def sigstop(self, index: int) -> int:
        """SIGSTOP the worker in slot `index` (it is not restarted while stopped); its pid."""
        slot = self.slots[index]
        assert slot.popen is not None
        slot.stopped = True
        os.killpg(slot.popen.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while process_state(slot.popen.pid) != "T":
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {slot.popen.pid} did not stop on SIGSTOP")
            time.sleep(0.01)
        return slot.popen.pid

    def sigstop_between_transactions(self, index: int, tries: int = 50) -> int:
        """SIGSTOP the worker in slot `index` at a moment no other connection holds a
        transaction (else let it run on a little and try again), so the stopped worker blocks
        nobody (SQLite's write lock, PostgreSQL row locks); its pid."""
        for _ in range(tries):
            pid = self.sigstop(index)
            if not others_in_transaction(self.database):
                return pid
            self.sigcont(index)
            self.slots[index].stopped = True  # still ours to stop: not restarted meanwhile
            time.sleep(0.02)  # let it end its transaction
        raise AssertionError(f"worker {self.pid(index)} was in a transaction each of {tries} times")

    def sigcont(self, index: int) -> int:
        """SIGCONT the worker in slot `index`; the monitor looks after it again."""
        slot = self.slots[index]
        assert slot.popen is not None
        os.killpg(slot.popen.pid, signal.SIGCONT)
        slot.stopped = False
        return slot.popen.pid

    def hold(self, index: int) -> None:
        """Stop restarting slot `index` (its process may be gone for good after a kill)."""
        self.slots[index].stopped = True

    @property
    def database(self) -> FaultDatabase:
        if self._db is None:
            self._db = FaultDatabase(self.url)
        return self._db

    def _track(self) -> None:
        """The recovery tracker: every 50 ms, for each SIGKILL not yet recovered, whether its
        worker still holds a running job; stamps `Kill.recovered_after` when it holds none."""
        db: FaultDatabase | None = None
        while not self._closed.wait(0.05):
            pending = [
                k
                for k in list(self.kills)
                if k.signal == signal.SIGKILL and k.recovered_after is None
            ]
            if not pending:
                continue
            try:
                db = db or FaultDatabase(self.url)
                for kill in pending:
                    if db.running_locked_by(kill.pid) == 0:
                        kill.recovered_after = time.monotonic() - kill.at
            except (sqlite3.Error, psycopg.Error):  # the database away: try again
                with contextlib.suppress(Exception):
                    if db is not None:
                        db.close()
                db = None
        if db is not None:
            db.close()

    def wait_recovered(self, timeout: float) -> list[float]:
        """Wait until no job is still running under a SIGKILLed worker (the tracker thread
        watches each kill from the moment it is made); every kill's `recovered_after`: seconds
        from the kill to its jobs being runnable again (reaped), to within ~50 ms, for the kills
        that hit a worker holding jobs (the others have nothing to recover)."""
        deadline = time.monotonic() + timeout
        while True:
            kills = [k for k in self.kills if k.signal == signal.SIGKILL]
            waiting = [k for k in kills if k.recovered_after is None]
            if not waiting:
                return [
                    k.recovered_after for k in kills if k.held and k.recovered_after is not None
                ]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"jobs still leased to killed workers after {timeout}s: "
                    + ", ".join(str(k.pid) for k in waiting)
                )
            time.sleep(0.05)

    # -- logs

    def log_paths(self) -> list[Path]:
        return sorted((p for s in self.slots for p in s.log_paths), key=lambda p: p.stat().st_mtime)

    def logs(self) -> str:
        """Every worker process's log so far."""
        parts = []
        for slot in self.slots:
            for path in slot.log_paths:
                with contextlib.suppress(OSError):
                    parts.append(f"----- {path.name} -----\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def log_lines(self, text: str) -> list[str]:
        """The log lines (of every worker process so far) containing `text`."""
        return [line for line in self.logs().splitlines() if text in line]

    def lease_lost_lines(self) -> list[str]:
        """I3's count: each fenced write refused or job given up, as the workers logged it."""
        return self.log_lines(LEASE_LOST)


def _reap_group(pgid: int) -> None:
    """SIGKILL a process group we started (a worker and anything it forked), if it still has
    members; gone already is fine."""
    if not group_pids(pgid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# -- the sampler -------------------------------------------------------------------------------


class Sampler:
    """Checks I4 and I7 every `interval` s on a thread of its own while the test runs."""

    def __init__(self, url: str, sweep: float = 0.5, interval: float = 1.0) -> None:
        self.url = url
        self.sweep = sweep
        self.interval = interval
        self.violations: list[str] = []
        self.samples = 0
        self.errors: list[str] = []  # the database away: not a violation, kept for the report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="fault-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        db: FaultDatabase | None = None
        while not self._stop.wait(self.interval):
            try:
                if db is None:
                    db = FaultDatabase(self.url)
                orphans = db.orphan_leases(self.sweep)
                if orphans:
                    self.violations.append(f"I4: {orphans} orphaned leases (sampled)")
                for row in db.long_transactions():
                    self.violations.append(f"I7: transaction older than {I7_LIMIT}s: {row}")
                self.samples += 1
            except (sqlite3.Error, psycopg.Error) as exc:  # the database away is not a violation
                with contextlib.suppress(Exception):
                    if db is not None:
                        db.close()
                db = None
                self.errors.append(str(exc))
        if db is not None:
            db.close()

    def stop(self) -> list[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        return self.violations


# -- the invariants ----------------------------------------------------------------------------


@dataclass
class Report:
    """What `check_invariants` counted."""

    jobs: int
    states: dict[str, int]
    executions: int
    extra_executions: int
    lease_lost_lines: int
    effects: int
    details: dict[str, Any] = field(default_factory=dict)


def _family(db: FaultDatabase, roots: Iterable[int]) -> set[int]:
    """The jobs `roots` and everything under them (children, callbacks: by parent_id)."""
    ids = set(roots)
    parents = dict(db.rows("SELECT id, parent_id FROM roadie_jobs WHERE parent_id IS NOT NULL"))
    changed = True
    while changed:
        changed = False
        for job_id, parent in parents.items():
            if parent in ids and job_id not in ids:
                ids.add(job_id)
                changed = True
    return ids


def check_invariants(
    db: FaultDatabase,
    job_ids: Iterable[int],
    *,
    timeout: float,
    sweep: float = 0.5,
    supervisor: Supervisor | None = None,
    sampler: Sampler | None = None,
    effect_tasks: Iterable[str] = EFFECT_TASKS,
    allow_failed: Iterable[int] = (),
    allow_lost: bool = False,
    allow_failed_under: Iterable[int] = (),
) -> Report:
    """Wait until every job (and every job under it) is terminal, then check I1-I7.

    I1 each job reaches exactly one terminal state by the deadline (and only the jobs in
    `allow_failed` may end failed); I2 exactly one effect per completed job of an effect task,
    from its final attempt, none for a failed one; I3 no stale write applied (a completion
    recorded for the final attempt only; no effect or start of an attempt above the job's);
    I4 no orphan lease; I5 attempt records strictly increasing, at most max_attempts, the last
    one the job's; I6 no duplicate (job_id, attempt) start; I7 (PostgreSQL) no transaction
    older than 5 s. The supervisor's logs give the lease-lost count; the sampler's findings
    count too."""
    roots = list(job_ids)
    allowed_failed = set(allow_failed)
    problems: list[str] = []
    deadline = time.monotonic() + timeout
    family = _family(db, roots)
    while True:
        family = _family(db, family)
        open_ = len(family) - db.terminal_count(family)
        if open_ == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    jobs = db.jobs(family)
    allowed_failed |= _family(db, allow_failed_under)
    missing = set(roots) - set(jobs)
    if missing:
        problems.append(f"I1: {len(missing)} enqueued jobs missing: {sorted(missing)[:10]}")
    stuck = {j.id: j.state for j in jobs.values() if j.state not in TERMINAL}
    if stuck:
        problems.append(
            f"I1: {len(stuck)} jobs not terminal after {timeout}s: {dict(list(stuck.items())[:10])}"
        )
    # A job running beside a crashing job (a bystander) is lost with it; lost three times it
    # fails `lost`, like the poison job itself. Tests with many crashes accept that, counted.
    lost = [
        j.id
        for j in jobs.values()
        if allow_lost
        and j.state == "failed"
        and j.failure == "lost"
        and [a.get("outcome") for a in j.attempts][-3:] == ["lost"] * 3
    ]
    bad_end = {
        j.id: (j.task, j.state, j.failure, (j.error or "")[:200])
        for j in jobs.values()
        if j.state in ("failed", "cancelled") and j.id not in allowed_failed and j.id not in lost
    }
    if bad_end:
        problems.append(f"I1: unexpected failed/cancelled jobs: {dict(list(bad_end.items())[:10])}")
    for j in jobs.values():
        completes = [a for a in j.attempts if a.get("outcome") == "complete"]
        if j.state == "complete" and j.task not in ("tree",):
            if len(completes) != 1 or j.attempts[-1].get("outcome") != "complete":
                problems.append(f"I1: complete job {j.id} has attempt records {_outcomes(j)}")
        elif j.state != "complete" and completes and j.task not in ("tree",):
            problems.append(f"I1: {j.state} job {j.id} has a complete attempt: {_outcomes(j)}")

    # I2 / I3: effects once, from the final attempt; nothing from another attempt.
    tasks = set(effect_tasks)
    effects = dict(db.rows("SELECT job_id, attempt FROM effects"))
    effect_count = db.value("SELECT count(*) FROM effects")
    for j in jobs.values():
        if j.task not in tasks:
            continue
        if j.state == "complete":
            if j.id not in effects:
                problems.append(f"I2: complete job {j.id} ({j.task}) has no effect")
            elif effects[j.id] != j.attempt:
                problems.append(
                    f"I3: job {j.id} effect from attempt {effects[j.id]}, final attempt {j.attempt}"
                )
        elif j.id in effects and j.state in TERMINAL:
            problems.append(f"I2: {j.state} job {j.id} has an effect (attempt {effects[j.id]})")
    stray = set(effects) - set(jobs)
    if stray and roots:
        problems.append(f"I2: effects for unknown jobs {sorted(stray)[:10]}")
    if effect_count != len(effects):
        problems.append(f"I2: {effect_count} effect rows for {len(effects)} jobs")

    # I5: attempts strictly increasing, at most max_attempts, never reset; I3: no start above.
    for j in jobs.values():
        numbers = [a.get("attempt") for a in j.attempts]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            problems.append(f"I5: job {j.id} attempt records not increasing: {numbers}")
        if numbers and numbers[-1] != j.attempt:
            problems.append(f"I5: job {j.id} at attempt {j.attempt}, last record {numbers[-1]}")
        if j.attempt > j.max_attempts:
            problems.append(f"I5: job {j.id} attempt {j.attempt} > max_attempts {j.max_attempts}")
    starts = db.rows("SELECT job_id, max(attempt) FROM executions GROUP BY job_id")
    for job_id, top in starts:
        if job_id in jobs and top > jobs[job_id].attempt:
            problems.append(
                f"I5: job {job_id} started attempt {top} > its attempt {jobs[job_id].attempt}"
            )

    # I6: one holder per attempt.
    dupes = db.rows(
        "SELECT job_id, attempt, count(*) FROM executions GROUP BY job_id, attempt"
        " HAVING count(*) > 1"
    )
    if dupes:
        problems.append(f"I6: attempts started more than once: {dupes[:10]}")

    # I4 / I7 now, and as sampled.
    orphans = db.orphan_leases(sweep)
    if orphans:
        problems.append(f"I4: {orphans} orphaned leases")
    for row in db.long_transactions():
        problems.append(f"I7: transaction older than {I7_LIMIT}s: {row}")
    if sampler is not None:
        problems.extend(sorted(set(sampler.stop())))

    executions = db.value("SELECT count(*) FROM executions")
    executed_jobs = db.value("SELECT count(DISTINCT job_id) FROM executions")
    lost_lines = len(supervisor.lease_lost_lines()) if supervisor is not None else 0
    states: dict[str, int] = {}
    for j in jobs.values():
        states[j.state] = states.get(j.state, 0) + 1
    if problems:
        raise InvariantViolation("invariants broken:\n  " + "\n  ".join(problems[:40]))
    return Report(
        jobs=len(jobs),
        states=states,
        executions=executions,
        extra_executions=executions - executed_jobs,
        lease_lost_lines=lost_lines,
        effects=effect_count,
        details={"lost": sorted(lost)},
    )


def _outcomes(job: JobRow) -> list[tuple[Any, Any]]:
    return [(a.get("attempt"), a.get("outcome")) for a in job.attempts]


# -- figures -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Figures:
    """The measured figures of one long-form test on one backend, written as JSON for
    bench/faults.md. Short forms record nothing (`write()` returns None)."""

    def __init__(self, test: str, backend: str, long_form: bool) -> None:
        self.test = test
        self.backend = backend
        self.long_form = long_form
        self.values: dict[str, Any] = {}
        self.recoveries: list[float] = []
        self.started = time.monotonic()

    def record(self, **values: Any) -> None:
        self.values.update(values)

    def recovery(self, seconds: float) -> None:
        self.recoveries.append(seconds)

    def as_dict(self) -> dict[str, Any]:
        rec = self.recoveries
        return {
            "test": self.test,
            "backend": self.backend,
            "wall_seconds": round(time.monotonic() - self.started, 1),
            **self.values,
            "recovery_s": {
                "count": len(rec),
                "p50": _round(percentile(rec, 50)),
                "p99": _round(percentile(rec, 99)),
                "max": _round(max(rec) if rec else None),
                "mean": _round(statistics.fmean(rec) if rec else None),
            },
        }

    def write(self) -> Path | None:
        if not self.long_form:
            return None
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.test}-{self.backend}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")
        return path


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
