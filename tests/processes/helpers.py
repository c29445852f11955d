"""Real worker processes for the process tests, and waiting on the database instead of sleeping."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from tests.helpers import wait_until  # noqa: F401 - re-exported for the process tests

ROOT = Path(__file__).resolve().parents[2]
ROADIE = Path(sys.executable).parent / "roadie"
APP = "tests.processes.workload:app"
T = TypeVar("T")


class Database:
    """Plain SQL on the test's database, `?` placeholders on both engines, autocommit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite:///")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(
                url.removeprefix("sqlite:///"), isolation_level=None, timeout=30
            )
        else:
            self.conn = psycopg.connect(url, autocommit=True)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.sqlite:
            sql = sql.replace("?", "%s")
        cursor = self.conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def value(self, sql: str, *params: Any) -> Any:
        return self.rows(sql, *params)[0][0]

    def states(self) -> dict[str, int]:
        return dict(self.rows("SELECT state, count(*) FROM roadie_jobs GROUP BY state"))  # type: ignore[arg-type]

    def count(self, state: str) -> int:
        return self.value("SELECT count(*) FROM roadie_jobs WHERE state = ?", state)

    def create_effect_tables(self) -> None:
        for table in ("effects", "executions"):
            self.rows(f"DROP TABLE IF EXISTS {table}")
        self.rows("CREATE TABLE effects (job_id BIGINT PRIMARY KEY, attempt INTEGER NOT NULL)")
        self.rows("CREATE TABLE executions (job_id BIGINT, attempt INTEGER, pid INTEGER)")

    def close(self) -> None:
        self.conn.close()


class WorkerProcess:
    """`roadie worker` in a process of its own; its output goes to a log file."""

    def __init__(
        self, url: str, log_dir: Path, args: Sequence[str], name: str, app: str = APP
    ) -> None:
        self.log_path = log_dir / f"{name}.log"
        env = {**os.environ, "ROADIE_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
        command = [str(ROADIE), "worker", "--app", app, "--lease", "2s", *args]
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: `stop()` ends its children too
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """End the process and any children it forked (SIGKILL: the test is over)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (the children of a `--processes` supervisor)."""
    return [p for p, (state, parent, _) in _processes().items() if parent == pid and state != "Z"]


def group_pids(pgid: int) -> list[int]:
    """The live processes of a process group (a worker started by `WorkerProcess` leads one)."""
    return [p for p, (state, _, group) in _processes().items() if group == pgid and state != "Z"]


def _processes() -> dict[int, tuple[str, int, int]]:
    """Every process: its state letter, parent pid and process group, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, parent, group = stat.rpartition(")")[2].split()[:3]
        found[int(entry.name)] = (state, int(parent), int(group))
    return found


def process_state(pid: int) -> str:
    """A process's state letter from /proc ("T" once SIGSTOP stopped it), "" if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def others_in_transaction(db: Database) -> bool:
    """Whether another connection holds SQLite's write lock, or has a PostgreSQL transaction open:
    a process stopped then would block the test's own writes until it runs again."""
    if db.sqlite:
        probe = sqlite3.connect(db.url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()
    return db.value(
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        " AND xact_start IS NOT NULL"
    )


def stop_between_transactions(worker: WorkerProcess, db: Database, tries: int = 50) -> None:
    """SIGSTOP the worker at a moment it has no transaction open (else let it run on a little
    and try again), so the stopped worker blocks nobody."""
    for _ in range(tries):
        worker.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while process_state(worker.pid) != "T":
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {worker.pid} did not stop on SIGSTOP")
            time.sleep(0.01)
        if not others_in_transaction(db):
            return
        worker.signal(signal.SIGCONT)
        time.sleep(0.02)  # let it end its transaction
    raise AssertionError(f"worker {worker.pid} was in a transaction each of {tries} times")
