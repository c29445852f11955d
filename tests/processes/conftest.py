"""Fixtures of the process tests: the effect tables, the workload's app, worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from roadie import App
from tests.processes import workload
from tests.processes.helpers import APP, Database, WorkerProcess


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """The test's database with empty `effects` and `executions` tables."""
    database = Database(db_url)
    database.create_effect_tables()
    yield database
    database.close()


@pytest.fixture
def tasks(db_url: str) -> Iterator[App]:
    """The workload's app on the test's database, to enqueue with."""
    with workload.build(db_url) as app:
        yield app


@pytest.fixture
def start_worker(db_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `roadie worker` processes (of `app`, the workload's by default); all are killed at
    the end and their logs printed."""
    started: list[WorkerProcess] = []

    def start(*args: str, app: str = APP) -> WorkerProcess:
        worker = WorkerProcess(db_url, tmp_path, args, name=f"worker-{len(started)}", app=app)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    for worker in started:  # shown when the test failed
        print(f"----- {worker.log_path.name} (pid {worker.pid}) -----\n{worker.log()}")
