"""F8: worker hosts whose clocks are wrong (libfaketime), on PostgreSQL.

roadie takes every time that decides correctness from the database server's clock: claims,
leases, renewals, the reaper's "expired", retry delays and `run_at` are all computed in SQL with
`now()` (roadie/clock.py: `DatabaseClock` passes no time, so the SQL falls back to the server's).
So a worker whose clock runs 5 minutes ahead must not reclaim live leases early (MailFathom#1989)
nor start delayed jobs early; one 5 minutes behind must not stamp leases that run out at once or
last too long; and a worker whose clock jumps back 30 s mid-run changes nothing either. The
self-fence and timeouts run on the monotonic clock, which a wall-clock step does not move
(FAKETIME_DONT_FAKE_MONOTONIC=1: an NTP step or a skewed host, not a broken kernel).

PostgreSQL only: SQLite has no server clock; roadie asks SQLite for `julianday('now')`, which is
the clock of the process running the statement, and all of a SQLite database's processes share
one host and so one clock. A wrong host clock there is every process's, consistently.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from roadie import App
from tests.faults import netfaults
from tests.faults.dbworkload import APP
from tests.faults.harness import ROOT, FaultDatabase, Figures, Sampler, Supervisor, check_invariants
from tests.faults.netfaults import require
from tests.helpers import wait_until

pg_cluster = netfaults.pg_cluster  # the module's throwaway cluster (fixture)
db_url = netfaults.db_url  # every test's database is on it (fixture)
FAKETIME_LIBS = [
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
]
LEASE = 2.0
SHIM = Path(__file__).parent / "faketime_site"  # its sitecustomize.py mends time.sleep


@pytest.fixture
def faketime() -> Path:
    """libfaketime's library (`make faketime` installs it)."""
    found = next((lib for lib in FAKETIME_LIBS if lib.exists()), None)
    require(None if found else "libfaketime is not installed (make faketime)")
    assert found is not None
    return found


def _skewed(lib: Path, spec_file: Path) -> dict[str, str]:
    """The environment of a worker whose wall clock is offset as `spec_file` says ("+300",
    "-30"...), read again every second so the test can step it mid-run."""
    return {
        "PYTHONPATH": f"{SHIM}{os.pathsep}{ROOT}",  # time.sleep despite libfaketime's bug
        "LD_PRELOAD": str(lib),
        "FAKETIME_TIMESTAMP_FILE": str(spec_file),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


class LeaseWatch:
    """Samples, on the database's clock, how far ahead the running jobs' leases end: a lease
    stamped from a skewed clock would end minutes away (or already have ended)."""

    def __init__(self, url: str) -> None:
        self.db = FaultDatabase(url)
        self.ahead: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)

    def start(self) -> LeaseWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.ahead += [
                row[0]
                for row in self.db.rows(
                    "SELECT extract(epoch FROM lock_expires_at - now())::float8"
                    " FROM roadie_jobs WHERE state = 'running'"
                )
            ]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.db.close()


def test_f8_skewed_worker_clocks(
    faketime: Path,
    fault_db: FaultDatabase,
    tasks: App,
    sampler: Sampler,
    figures: Figures,
    long_form: bool,
    tmp_path: Path,
) -> None:
    """Three workers: one 5 min ahead, one 5 min behind, one on time that steps back 30 s
    mid-run. Long jobs heartbeating across several leases are never reclaimed; delayed jobs
    never start before their run_at; no lease is stamped longer than the lease or already
    expired; I1-I6."""
    count = 2_000 if long_form else 200
    long_jobs = tasks.get_task("long_job").enqueue_many([{"seconds": 2.5 * LEASE}] * 6)
    delayed = tasks.get_task("work").options(delay=3).enqueue_many([{"ms": 5}] * 30)
    work = tasks.get_task("work").enqueue_many([{"ms": 5, "ms_max": 50}] * count)
    ids = [job.id for job in [*long_jobs, *delayed, *work]]
    specs = {"ahead": "+300", "behind": "-300", "jumps": "+0"}
    sups: list[Supervisor] = []
    watch = LeaseWatch(fault_db.url).start()
    try:
        for name, spec in specs.items():
            spec_file = tmp_path / f"{name}.faketime"
            spec_file.write_text(spec + "\n")
            sups.append(
                Supervisor(
                    fault_db.url,
                    tmp_path / name,
                    workers=1,
                    concurrency=4,
                    lease=f"{LEASE:g}s",
                    sweep="0.5s",
                    env=_skewed(faketime, spec_file),
                    app=APP,
                ).start()
            )
        wait_until(lambda: _worker_clocks(fault_db) == 3, 30, "three workers registered")
        wait_until(lambda: fault_db.count("complete") >= 20, 60, "work under way")
        (tmp_path / "jumps.faketime").write_text("-30\n")  # one clock steps back mid-run
        time.sleep(1.5)  # libfaketime reads the step within a second
        skews = {name: _clock_of(sup.env) for name, sup in zip(specs, sups, strict=True)}
        reports = [
            check_invariants(
                fault_db,
                ids,
                timeout=300 if long_form else 60,
                supervisor=sups[0],
                sampler=sampler,
            )
        ]
    finally:
        watch.stop()
        for sup in sups:
            sup.close()
        for sup in sups:
            print(sup.logs()[-5000:])

    jobs = fault_db.jobs([job.id for job in long_jobs])
    early = fault_db.rows(
        "SELECT id, extract(epoch FROM started_at - run_at)::float8 FROM roadie_jobs"
        " WHERE id = ANY(?) AND started_at < run_at",
        [job.id for job in delayed],
    )
    first_start = fault_db.value(
        "SELECT extract(epoch FROM min(started_at) - min(created_at))::float8 FROM roadie_jobs"
        " WHERE id = ANY(?)",
        [job.id for job in delayed],
    )
    runners = fault_db.value(
        "SELECT count(DISTINCT locked_by) FROM roadie_jobs WHERE state = 'running'"
    )
    lost = [
        (job.id, a.get("outcome")) for job in jobs.values() for a in job.attempts
        if a.get("outcome") != "complete"
    ]  # fmt: skip
    figures.record(
        jobs=len(ids),
        max_lease_ahead_s=max(watch.ahead, default=None),
        min_lease_ahead_s=min(watch.ahead, default=None),
        delayed_first_start_s=first_start,
        extra_executions=reports[0].extra_executions,
        skews=skews,
    )
    print(f"F8: skews {skews}; leases ahead {min(watch.ahead):.2f}..{max(watch.ahead):.2f}s")
    assert skews["ahead"] > 290 and skews["behind"] < -290, skews  # the clocks were skewed
    assert skews["jumps"] < -25, skews  # stepped back mid-run
    assert not lost, f"long jobs reclaimed while their worker renewed them: {lost}"
    assert all(job.attempt == 1 for job in jobs.values())
    assert not early, f"delayed jobs started before their run_at: {early}"
    assert first_start >= 3.0 - 0.01
    assert watch.ahead and max(watch.ahead) <= LEASE + 0.5, "a lease longer than the lease"
    assert runners == 0
    assert all(sup.restarts == 0 for sup in sups)


def _worker_clocks(db: FaultDatabase) -> int:
    return db.value("SELECT count(*) FROM roadie_workers WHERE stopped_at IS NULL")


def _clock_of(env: dict[str, str]) -> float:
    """How far the wall clock of a process started with `env` is from this one's, now."""
    out = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return round(float(out.stdout) - time.time(), 1)
