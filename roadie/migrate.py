"""Bring a database's schema up to date: numbered migrations, each applied once.

Safe when two processes race: each backend applies a migration under its engine's write lock
(an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on SQLite) and re-checks inside it.
"""

from __future__ import annotations

from roadie.backends.base import Backend


def migrate(backend: Backend) -> list[int]:
    """Apply every migration not yet applied; returns the versions this call applied."""
    applied = []
    for migration in backend.migrations():
        if backend.migration_apply(migration):
            applied.append(migration.version)
    return applied
