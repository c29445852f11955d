"""The clock that decides correctness is the database's; tests may freeze it.

Every statement that compares or stamps a time takes an optional `now`. A `DatabaseClock`
passes None, so the SQL falls back to the database's own clock; a `FrozenClock` passes a fixed
instant, so tests step time forward instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class DatabaseClock:
    """The default: every time comes from the database server."""

    def now(self) -> datetime | None:
        return None


class FrozenClock:
    """A clock that moves only when told to; pass it as `App(..., clock=FrozenClock())`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


Clock = DatabaseClock | FrozenClock
