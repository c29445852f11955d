"""Shared fixtures: a real SQLite file per test and a real PostgreSQL database per session.

PostgreSQL comes from ROADIE_TEST_POSTGRES_URL (default: the local server). Each session creates
its own database and truncates roadie's tables between tests. Under CI=true a missing PostgreSQL
fails the run; elsewhere its tests are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from roadie import App, FrozenClock

PG_ADMIN_URL = os.environ.get(
    "ROADIE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgres"]


def _with_database(url: str, name: str) -> str:
    """The same server URL naming another database."""
    head, _, tail = url.partition("://")
    authority, _, rest = tail.partition("/")
    query = rest.partition("?")[2]
    return f"{head}://{authority}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"roadie_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(PG_ADMIN_URL, name)
    with App(url) as app:
        app.migrate()
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE roadie_jobs, roadie_workers, roadie_queues, roadie_audit, roadie_rollups"
            " RESTART IDENTITY"
        )
    return pg_server_url


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'roadie.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per backend, on a migrated, empty database."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        with App(url) as app:
            app.migrate()
        return url
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., App]]:
    """Build Apps on the test's database; all are closed at the end."""
    apps: list[App] = []

    def make(**kwargs: Any) -> App:
        app = App(db_url, **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture
def clock() -> FrozenClock:
    """The database clock of `frozen_app`, frozen until the test moves it (`clock.advance`)."""
    return FrozenClock()


@pytest.fixture
def frozen_app(make_app: Callable[..., App], clock: FrozenClock) -> App:
    """An App on the test's database whose clock is `clock`: no sleeping."""
    return make_app(clock=clock)
