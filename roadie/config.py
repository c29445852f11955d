"""Validation of everything a user hands roadie: URLs, durations, names, priorities. Pure."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import timedelta

from roadie.errors import InvalidInput

DEFAULT_DATABASE_URL = "sqlite:///roadie.db"
QUEUE_NAME = re.compile(r"[a-z0-9_.-]{1,64}")
TASK_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_RANGE = (1, 1000)
MAX_DELAY_SECONDS = 10 * 365 * 86400
MAX_ID = 2**63 - 1  # job ids are 64-bit in both engines
DEFAULT_MAX_ARGS_BYTES = 256 * 1024
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")  # no unit: seconds
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def shown(value: object, limit: int = 80) -> str:
    """A bad value as it goes into a one-line error message: its repr, cut to `limit`, with any
    password in a URL masked."""
    text = _URL_PASSWORD.sub(r"\1***@", repr(value))
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from "500ms"/"30s"/"15m"/"2h"/"7d", a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidInput(f"bad {what} {shown(value)}: use e.g. 500ms, 30s, 15m, 2h, 7d")
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise InvalidInput(f"bad {what} {shown(value)}: use e.g. 500ms, 30s, 15m, 2h, 7d")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"bad {what} {shown(value)}: must be a finite, non-negative duration")
    return seconds


def check_queue(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid queue name {shown(name)}: use 1-64 characters of a-z 0-9 _ . -"
        )
    return name


def check_task_name(name: object) -> str:
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid task name {shown(name)}: use 1-128 characters of A-Z a-z 0-9 _ . : -"
        )
    return name


def is_storable_id(value: object) -> bool:
    """Whether a job id can name a row (a 64-bit integer); refuses what is not an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"bad job id {shown(value)}: must be an integer")
    return -MAX_ID <= value <= MAX_ID


def check_int(value: object, what: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"bad {what} {shown(value)}: must be an integer from {low} to {high}")
    return value


def check_priority(value: object) -> int:
    return check_int(value, "priority", PRIORITY_RANGE)


def check_max_attempts(value: object) -> int:
    return check_int(value, "max_attempts", MAX_ATTEMPTS_RANGE)


def database_url(url: str | None) -> str:
    """The URL to use: the one given (even empty: refused later), else ROADIE_DATABASE_URL,
    else the embedded default."""
    if url is not None:
        return url
    return os.environ.get("ROADIE_DATABASE_URL") or DEFAULT_DATABASE_URL


@dataclass(frozen=True)
class DatabaseURL:
    scheme: str  # "sqlite" or "postgresql"
    url: str  # the URL as given (PostgreSQL) or the file path (SQLite)
    synchronous: str = "full"  # SQLite: "full" (durable commits) or "normal" (see README)


SQLITE_SYNCHRONOUS = ("full", "normal")


def _sqlite_synchronous(url: str, query: str) -> str:
    """The one option a SQLite URL takes: `?synchronous=full` (the default) or `normal`."""
    if not query:
        return "full"
    name, _, value = query.partition("=")
    if name != "synchronous" or value.lower() not in SQLITE_SYNCHRONOUS:
        raise InvalidInput(
            f"bad database URL {shown(url)}: SQLite takes only ?synchronous=full or =normal"
        )
    return value.lower()


def parse_database_url(url: object) -> DatabaseURL:
    """Which engine a URL names; refuses anything else with a one-line reason."""
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"malformed database URL {shown(url)}")
    if url.startswith("sqlite:///"):
        path, _, query = url[len("sqlite:///") :].partition("?")
        if not path or "?" in query:
            raise InvalidInput(
                f"malformed database URL {shown(url)}: use sqlite:///path/to/file.db"
            )
        return DatabaseURL("sqlite", path, _sqlite_synchronous(url, query))
    if url.startswith(("postgresql://", "postgres://")):
        if url.count("://") != 1 or len(url.split("://", 1)[1]) == 0:
            raise InvalidInput(f"malformed database URL {shown(url)}")
        return DatabaseURL("postgresql", url)
    raise InvalidInput(
        f"malformed database URL {shown(url)}: use sqlite:///file.db or postgresql://user@host/db"
    )
