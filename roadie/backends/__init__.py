"""open_backend(url): the storage engine a database URL names."""

from __future__ import annotations

from roadie.backends.base import Backend
from roadie.clock import Clock, DatabaseClock
from roadie.config import parse_database_url


def check_database_url(url: object) -> None:
    """Refuse a malformed URL now (InvalidInput), before anything connects."""
    if parse_database_url(url).scheme == "postgresql":
        from roadie.backends.postgres import check_url

        check_url(url)  # type: ignore[arg-type]


def open_backend(url: str, clock: Clock | None = None, pool_size: int = 10) -> Backend:
    """A backend for `sqlite:///...` or `postgresql://...`; connects lazily."""
    parsed = parse_database_url(url)
    clock = clock or DatabaseClock()
    if parsed.scheme == "sqlite":
        from roadie.backends.sqlite import SQLiteBackend

        return SQLiteBackend(parsed.url, clock, parsed.synchronous)
    from roadie.backends.postgres import PostgresBackend

    return PostgresBackend(parsed.url, clock, pool_size=pool_size)
