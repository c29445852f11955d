"""Which errors are worth retrying, and after how long. Pure: no I/O, randomness injectable."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from roadie.config import parse_duration
from roadie.errors import InvalidInput, Permanent, Transient

# The platform's rule: timeouts and unavailable services are worth another try; everything else
# (invalid data, missing dependencies, logic errors) will fail the same way again.
DEFAULT_TRANSIENT: tuple[type[BaseException], ...] = (Transient, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: base * factor^(attempt-1), capped, +- jitter."""

    base: Any = "1s"
    factor: float = 2.0
    cap: Any = "1h"
    jitter: float = 0.2

    def __post_init__(self) -> None:
        parse_duration(self.base, "backoff base")
        parse_duration(self.cap, "backoff cap")
        if not (isinstance(self.factor, int | float) and self.factor >= 1):
            raise InvalidInput(f"bad backoff factor {self.factor!r}: must be a number >= 1")
        if not (isinstance(self.jitter, int | float) and 0 <= self.jitter < 1):
            raise InvalidInput(f"bad backoff jitter {self.jitter!r}: must be from 0 to below 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt after `attempt` (the one that just failed)."""
        base = parse_duration(self.base)
        cap = parse_duration(self.cap)
        exponent = min(max(attempt - 1, 0), 64)
        raw = min(base * self.factor**exponent, cap)
        spread = raw * self.jitter
        return max(0.0, raw + (rng or random).uniform(-spread, spread))


DEFAULT_BACKOFF = Backoff()


def normalize_retry_on(retry_on: Any) -> dict[type[BaseException], Backoff | None]:
    """`retry_on` as a mapping from exception class to its own backoff (None: the task's)."""
    if retry_on is None:
        return {}
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    items = retry_on.items() if isinstance(retry_on, Mapping) else ((cls, None) for cls in retry_on)
    result: dict[type[BaseException], Backoff | None] = {}
    for cls, backoff in items:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise InvalidInput(f"retry_on takes exception classes, not {cls!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidInput(f"retry_on maps {cls.__name__} to {backoff!r}, not a Backoff")
        result[cls] = backoff
    return result


@dataclass(frozen=True)
class Decision:
    """What to do after an attempt raised: retry after `delay` seconds, or fail as `failure`."""

    retry: bool
    delay: float = 0.0
    failure: str | None = None


def decide(
    exc: BaseException,
    attempt: int,
    max_attempts: int,
    retry_on: Mapping[type[BaseException], Backoff | None],
    backoff: Backoff = DEFAULT_BACKOFF,
    rng: random.Random | None = None,
) -> Decision:
    """Classify an error and, for a transient one with attempts left, choose the delay."""
    if isinstance(exc, Permanent):
        return Decision(retry=False, failure=_failure_kind(exc.failure))
    own_backoff = _transient_backoff(exc, retry_on)
    if own_backoff is None:
        return Decision(retry=False, failure="permanent")
    if attempt >= max_attempts:
        return Decision(retry=False, failure="exhausted")
    if isinstance(exc, Transient) and exc.retry_in is not None:
        return Decision(retry=True, delay=parse_duration(exc.retry_in, "retry_in"))
    chosen = own_backoff if isinstance(own_backoff, Backoff) else backoff
    return Decision(retry=True, delay=chosen.delay(attempt, rng))


def _transient_backoff(
    exc: BaseException, retry_on: Mapping[type[BaseException], Backoff | None]
) -> Backoff | bool | None:
    """The backoff a transient error asks for (True: the task's), or None if it is permanent."""
    for cls, backoff in retry_on.items():
        if isinstance(exc, cls):
            return backoff or True
    if isinstance(exc, DEFAULT_TRANSIENT):
        return True
    return None


def describe(exc: BaseException) -> str:
    """The one-line error kept on the job: roadie's own errors by message, others with their type."""
    message = str(exc)
    if isinstance(exc, Transient | Permanent) and message:
        return message
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def retry_at_once(attempt: int, max_attempts: int) -> Decision:
    """Another attempt now (the worker stopped or lost the job, not the task's fault), unless
    none is left: attempt numbers only grow, so the last one ends the job as exhausted."""
    if attempt >= max_attempts:
        return Decision(retry=False, failure="exhausted")
    return Decision(retry=True)


def decide_expiry(
    attempt: int,
    max_attempts: int,
    backoff: Backoff = DEFAULT_BACKOFF,
    rng: random.Random | None = None,
) -> Decision:
    """A job that ran past its timeout is retried like a transient error, or fails as expired."""
    if attempt >= max_attempts:
        return Decision(retry=False, failure="expired")
    return Decision(retry=True, delay=backoff.delay(attempt, rng))


FAILURE_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _failure_kind(failure: object) -> str:
    """A task's own failure kind if it is a plain name, else "permanent"."""
    return failure if isinstance(failure, str) and FAILURE_KIND.fullmatch(failure) else "permanent"
