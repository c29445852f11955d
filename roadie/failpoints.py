"""Failpoints: kill the worker process at a named point, for the fault-injection suite.

A crash between two writes can't be produced reliably from outside the process, so the fault
tests (tests/faults) switch these on through the environment of the workers they start:

    ROADIE_FAILPOINTS="complete.before_commit=0.05,complete.after_commit=0.05"
    ROADIE_FAILPOINT_LOG=/tmp/crashes.log   # optional: one "name detail" line per crash

Each named point then SIGKILLs its own process with that probability (1 when none is given),
after appending a line to the log so the test knows which jobs it interrupted. Unset (always
in production), a failpoint costs one dictionary lookup.

Points: `complete.before_commit` (the task's `ctx.transaction()` writes and the fenced completion
are done, not committed) and `complete.after_commit` (committed, the worker not yet told).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable

__all__ = ["failpoint", "parse"]


def parse(text: str) -> dict[str, float]:
    """`"a=0.5,b"` -> `{"a": 0.5, "b": 1.0}`; a bad probability is a clear error, not a silent 0."""
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, chance = item.partition("=")
        try:
            probability = float(chance) if chance else 1.0
        except ValueError:
            raise ValueError(
                f"bad ROADIE_FAILPOINTS entry {item!r}: want name[=probability]"
            ) from None
        points[name.strip()] = probability
    return points


_ACTIVE = parse(os.environ.get("ROADIE_FAILPOINTS", ""))
_LOG = os.environ.get("ROADIE_FAILPOINT_LOG")


def failpoint(name: str, detail: Callable[[], str] = str) -> None:
    """Die here (SIGKILL, no cleanup) if the failpoint `name` is switched on and its dice say so.

    `detail` makes the log line's text only then: the hot paths that call this pay nothing."""
    probability = _ACTIVE.get(name)
    if probability is None or random.random() >= probability:
        return
    if _LOG:
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{name} {detail()}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
