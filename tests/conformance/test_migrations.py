"""The schema: numbered migrations, the same in both dialects, idempotent, safe when racing."""

from __future__ import annotations

from roadie import App
from roadie.backends.base import QUERY_NAMES, SCHEMA, load_migrations, load_queries
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
    import psycopg

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
