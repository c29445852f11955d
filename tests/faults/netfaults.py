"""Shared pieces of the database, network and clock fault tests (F5-F8, F18, F19, worker hosts).

- `pg_cluster` (module-scoped fixture): a throwaway PostgreSQL cluster (pgcluster.py) that the
  tests may crash, restart and reconfigure; one per module, since `initdb` costs seconds.
- `db_url` (fixture): overrides tests/conftest.py's in the modules that import it, so the
  harness's fixtures (`fault_db`, `tasks`, `supervisor`, `sampler`, `figures`) all work on a
  fresh, migrated database of that cluster. These faults are PostgreSQL's (FAULTS.md: "Postgres
  unless marked"): SQLite has no server to restart, no connections to cut, no server clock.
- `require(reason)`: skip when a prerequisite is missing, but fail under CI=true.
- `HostSupervisor`: the harness's `Supervisor`, each worker started inside a network namespace.
- `RoadieTransactions`: I7 for roadie's own connections only (F18 holds a long transaction of
  its own on purpose, which the harness's sampler would rightly report).
- `reconnect`, `completed`, `log_time`, `wait_for_db`: small helpers.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from roadie import App
from tests.faults import pgcluster
from tests.faults.harness import ROADIE, ROOT, FaultDatabase, Supervisor
from tests.faults.netns import Host
from tests.faults.pgcluster import PgCluster

ENGINE_APPLICATION = "roadie"  # the application_name roadie's PostgreSQL connections set


def require(reason: str | None) -> None:
    """Skip the test for a missing prerequisite (`reason`), or fail it under CI=true."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for this module's tests, destroyed at the end."""
    require(pgcluster.available())
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def db_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, migrated database on the module's throwaway cluster (replaces the conftest's
    sqlite/postgres parametrization in the modules that import this fixture)."""
    if not pg_cluster.running():  # an earlier test failed while the cluster was down
        pg_cluster.start()
    name = f"faults_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = pg_cluster.create_database(name)
    with App(url) as app:
        app.migrate()
    yield url
    with contextlib.suppress(Exception):
        if not pg_cluster.running():
            pg_cluster.start()
        pg_cluster.drop_database(name)


def reconnect(db: FaultDatabase) -> FaultDatabase:
    """Give `db` a new connection (after the server restarted under it); waits for the server."""
    with contextlib.suppress(Exception):
        db.conn.close()
    db.conn = wait_for_db(db.url)
    return db


def wait_for_db(url: str, timeout: float = 60.0) -> psycopg.Connection[Any]:
    """An autocommit connection to `url`, retrying while the server is away."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def completed(db: FaultDatabase) -> int:
    return db.count("complete")


def terminate_backends(db: FaultDatabase, application: str = ENGINE_APPLICATION) -> int:
    """`pg_terminate_backend` every connection of `application` to this test's database only."""
    return len(
        db.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = ?"
            " AND pid <> pg_backend_pid()",
            application,
        )
    )


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_time(line: str) -> float | None:
    """The wall-clock time (epoch seconds) a worker's log line was written, from its prefix."""
    found = _LOG_TIME.match(line)
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()


def job_of(line: str) -> tuple[int, int] | None:
    """(job id, attempt) named by a worker's log line "job N attempt M: ..."."""
    found = re.search(r"job (\d+) attempt (\d+):", line)
    return (int(found.group(1)), int(found.group(2))) if found else None


class HostSupervisor(Supervisor):
    """The harness's supervisor, with worker slot i started inside network namespace hosts[i]
    (hosts may be None: that slot runs on this machine)."""

    def __init__(self, url_for: Sequence[str], hosts: Sequence[Host | None], **kwargs: Any) -> None:
        super().__init__(url_for[0], workers=len(hosts), **kwargs)
        self.hosts = list(hosts)
        self.urls = list(url_for)

    def _spawn(self, slot: Any) -> None:
        path = self.log_dir / f"worker-{slot.index}-{self._spawned}.log"
        self._spawned += 1
        host = self.hosts[slot.index]
        command = [str(ROADIE), "worker", "--app", self.app, *self.args]
        env = {**self.env, "ROADIE_DATABASE_URL": self.urls[slot.index]}
        with open(path, "wb") as log:
            slot.popen = subprocess.Popen(
                host.command(command) if host is not None else command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        slot.log_paths.append(path)
        self.all_pids.append(slot.popen.pid)


class RoadieTransactions:
    """I7 for roadie's own connections (application_name "roadie"), sampled every `interval` s:
    the oldest transaction seen and any older than `limit` s."""

    def __init__(self, url: str, limit: float = 5.0, interval: float = 0.25) -> None:
        self.url = url
        self.limit = limit
        self.interval = interval
        self.oldest = 0.0
        self.violations: list[tuple[Any, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roadie-i7", daemon=True)

    def start(self) -> RoadieTransactions:
        self._thread.start()
        return self

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                rows = conn.execute(
                    "SELECT pid, extract(epoch FROM now() - xact_start)::float8, left(query, 100)"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = %s AND xact_start IS NOT NULL",
                    (ENGINE_APPLICATION,),
                ).fetchall()
                for row in rows:
                    self.oldest = max(self.oldest, row[1])
                    if row[1] > self.limit:
                        self.violations.append(row)

    def stop(self) -> RoadieTransactions:
        self._stop.set()
        self._thread.join(10)
        return self


def log_dir(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir(parents=True, exist_ok=True)
    return path
