"""Start and finish times of every no-op job, written by the job itself, for every system alike.

Each peer's task (and roadie's, in the comparison) calls `record(started)` at its end. One line
per job goes to a file per process (`$PEER_STAMPS/<pid>.txt`, opened once with O_APPEND, one
unbuffered `os.write` of ~36 bytes: a few microseconds, against the hundreds a queue spends per
job). The runner reads them all: steady rate = jobs / (last finish - first start), the same
definition as roadie's own bench (first job started to last job done). Standard library only: the
peers' virtual environments import it from this folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_fd: int | None = None
_pid: int | None = None


def _file() -> int:
    """This process's stamp file; reopened after a fork (Celery's prefork children)."""
    global _fd, _pid
    if _fd is None or _pid != os.getpid():
        folder = os.environ["PEER_STAMPS"]
        _pid = os.getpid()
        _fd = os.open(
            os.path.join(folder, f"{_pid}.txt"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
    return _fd


def record(started: float) -> None:
    """Append "<started> <finished>" (epoch seconds) for one job."""
    os.write(_file(), f"{started:.6f} {time.time():.6f}\n".encode())


def read(folder: Path) -> list[tuple[float, float]]:
    """Every (started, finished) pair written under `folder`."""
    pairs = []
    for path in sorted(folder.glob("*.txt")):
        for line in path.read_text().splitlines():
            start, finish = line.split()
            pairs.append((float(start), float(finish)))
    return pairs


def count(folder: Path) -> int:
    """Jobs done so far (lines written), cheaply enough to poll."""
    return sum(path.read_bytes().count(b"\n") for path in folder.glob("*.txt"))
