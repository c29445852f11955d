"""Fixtures of the fault suite: short or long form, a fresh database per test on each backend with
the workload's tables, the workload's app to enqueue with, supervised worker processes that are
always killed at the end, and the I4/I7 sampler.

`db_url` (tests/conftest.py) gives every test a new SQLite file, or the session's PostgreSQL
database emptied; `fault_db` adds the workload's tables. Tests that need only one engine use
`sqlite_fault_db` / `pg_fault_db` style parametrization through `request.getfixturevalue`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from roadie import App
from tests.faults import workload
from tests.faults.harness import FaultDatabase, Figures, Sampler, Supervisor


@pytest.fixture(scope="session")
def long_form() -> bool:
    """True when ROADIE_FAULTS=long (`make test-faults`): the FAULTS.md sizes, figures written."""
    return os.environ.get("ROADIE_FAULTS") == "long"


@pytest.fixture
def fault_db(db_url: str) -> Iterator[FaultDatabase]:
    """The test's database (each backend in turn) with empty workload tables."""
    database = FaultDatabase(db_url)
    database.create_tables()
    yield database
    database.close()


@pytest.fixture
def backend(fault_db: FaultDatabase) -> str:
    """ "sqlite" or "postgres": the engine this run of the test is on."""
    return fault_db.backend


@pytest.fixture
def tasks(db_url: str) -> Iterator[App]:
    """The workload's app on the test's database, to enqueue with."""
    with workload.build(db_url) as app:
        yield app


@pytest.fixture
def supervisor(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Supervisor]]:
    """`supervisor(workers=3, concurrency=4, lease="2s", ...)` starts a `Supervisor` of real
    worker processes on the test's database; every one is killed at the end, pass or fail, and
    their logs are printed (pytest shows them when the test failed)."""
    started: list[Supervisor] = []

    def make(**kwargs: Any) -> Supervisor:
        kwargs.setdefault("log_dir", tmp_path / f"workers-{len(started)}")
        sup = Supervisor(db_url, **kwargs)
        started.append(sup)
        return sup.start()

    try:
        yield make
    finally:
        for sup in started:
            sup.close()
        for sup in started:
            print(sup.logs()[-20000:])


@pytest.fixture
def sampler(db_url: str) -> Iterator[Sampler]:
    """The I4/I7 sampler, running for the whole test; `check_invariants(sampler=...)` reads it."""
    sample = Sampler(db_url).start()
    yield sample
    sample.stop()


@pytest.fixture
def figures(request: pytest.FixtureRequest, backend: str, long_form: bool) -> Iterator[Figures]:
    """The figures of this test on this backend; written to bench/results/faults/ in long form
    when the test passed."""
    name = request.node.originalname.removeprefix("test_")
    fig = Figures(name, backend, long_form)
    yield fig
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        fig.write()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so `figures` writes only passed runs."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
