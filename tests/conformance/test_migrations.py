"""The schema: numbered migrations, the same in both dialects, idempotent, safe when racing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from roadie import App, FrozenClock
from roadie.backends.base import (
    BULK_INSERT_MIN,
    QUERY_NAMES,
    SCHEMA,
    load_migrations,
    load_queries,
)
from roadie.backends.postgres import POSTGRES_ONLY
from tests.helpers import run_together

ALL_VERSIONS = [m.version for m in load_migrations("roadie.backends.sqlite")]


def test_both_dialects_have_the_same_migrations_and_queries() -> None:
    sqlite = load_migrations("roadie.backends.sqlite")
    postgres = load_migrations("roadie.backends.postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]
    assert [m.version for m in sqlite] == list(range(1, len(sqlite) + 1))
    assert set(load_queries("roadie.backends.sqlite")) == QUERY_NAMES
    postgres_queries = load_queries("roadie.backends.postgres", own=POSTGRES_ONLY)
    assert set(postgres_queries) == QUERY_NAMES | POSTGRES_ONLY


def test_the_migrated_schema_is_what_the_code_expects(app: App) -> None:
    columns = app.backend.schema_columns()
    assert {table: set(cols) for table, cols in columns.items()} == {
        table: set(cols) for table, cols in SCHEMA.items()
    }


def test_migrate_is_idempotent(app: App) -> None:
    assert app.migrate() == []
    assert app.backend.migration_versions() == {m.version for m in app.backend.migrations()}


def test_racing_migrations_on_sqlite_apply_each_version_once(tmp_path) -> None:
    """Four processes' worth of connections creating and migrating one new file at once."""
    for round_ in range(20):
        url = f"sqlite:///{tmp_path / f'race-{round_}.db'}"
        apps = [App(url) for _ in range(4)]
        applied = run_together(App.migrate, apps)
        for app in apps:
            app.close()
        assert sorted(v for versions in applied for v in versions) == ALL_VERSIONS


def test_racing_migrations_on_postgres(pg_server_url) -> None:
    admin_url = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS roadie_migrate_race WITH (FORCE)")
        conn.execute("CREATE DATABASE roadie_migrate_race")
    url = pg_server_url.rsplit("/", 1)[0] + "/roadie_migrate_race"
    apps = [App(url) for _ in range(4)]
    applied = run_together(App.migrate, apps)
    for app in apps:
        app.close()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE roadie_migrate_race WITH (FORCE)")
    assert sorted(v for versions in applied for v in versions) == ALL_VERSIONS


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of each dialect with no schema yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.db'}"
        return
    server_url = request.getfixturevalue("pg_server_url")
    admin_url = server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS roadie_upgrade WITH (FORCE)")
        conn.execute("CREATE DATABASE roadie_upgrade")
    yield server_url.rsplit("/", 1)[0] + "/roadie_upgrade"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE roadie_upgrade WITH (FORCE)")


def _query(url: str, sql: str) -> list[tuple]:
    """Run one statement on a connection of its own and commit; its rows as tuples."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn, conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(url) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def _key_indexes(url: str) -> dict[str, str]:
    """The indexes of roadie_jobs that hold a key column (or a UNIQUE of a column's own)."""
    if url.startswith("sqlite"):
        sql = "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE tbl_name = 'roadie_jobs'"
    else:
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'roadie_jobs'"
    return {
        name: definition
        for name, definition in _query(url, sql)
        if "idempotency" in name or "callback" in name or name.startswith("sqlite_autoindex")
    }


def test_migration_9_keeps_every_row_and_id_and_keys_stay_unique(unmigrated_url: str) -> None:
    """0009 makes the two key indexes partial (on SQLite by rebuilding the table). This
    version's statements must work on the schema before it, every row must come through
    unchanged, the keys must stay unique, and the ids of deleted jobs must stay retired."""
    url = unmigrated_url
    with App(url, clock=FrozenClock()) as app:
        for migration in app.backend.migrations():
            if migration.version < 9:
                app.backend.migration_apply(migration)
        assert 9 not in app.backend.migration_versions()
        assert any("UNIQUE" in d.upper() and "WHERE" not in d for d in _key_indexes(url).values())

        @app.task(queue="content")
        def publish(ctx, video: int) -> None:
            ctx.spawn(render, video=video)

        @publish.on_child_complete
        def rendered(ctx, child) -> None: ...

        @app.task(queue="content")
        def render(ctx, video: int) -> None: ...

        keyed = publish.options(idempotency_key="video-1").enqueue(video=1)
        assert publish.options(idempotency_key="video-1").enqueue(video=2).id == keyed.id
        publish.enqueue(video=3)
        app.run_worker(burst=True)  # parents, children and callback jobs (with callback keys)
        render.enqueue_many([{"video": n} for n in range(BULK_INSERT_MIN)])
        highest = render.enqueue(video=-1)
        _query(url, f"DELETE FROM roadie_jobs WHERE id = {highest.id}")
        before = _query(url, "SELECT * FROM roadie_jobs ORDER BY id")
        assert _query(url, "SELECT count(*) FROM roadie_jobs WHERE callback_key IS NOT NULL") == [
            (2,)
        ]

        assert app.migrate() == [9]
        assert _query(url, "SELECT * FROM roadie_jobs ORDER BY id") == before
        indexes = _key_indexes(url)
        assert sorted(indexes) == ["roadie_jobs_callback_key", "roadie_jobs_idempotency_key"]
        assert all("WHERE" in definition.upper() for definition in indexes.values()), indexes
        assert render.enqueue(video=5).id > highest.id  # (a refused key would take an id too)
        assert publish.options(idempotency_key="video-1").enqueue(video=4).id == keyed.id
