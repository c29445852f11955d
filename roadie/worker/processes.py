"""`--processes P`: P worker processes under one supervisor that restarts any that die.

The supervisor forks after closing its own connections, so every child opens its own. SIGTERM
and SIGINT are passed on to the children, which stop gracefully; a second one stops them now.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

log = logging.getLogger("roadie")
RESTART_DELAY = 1.0


def supervise(run_child: Callable[[], int], processes: int, burst: bool) -> int:
    """Run `run_child` in `processes` forked children; 0 if every child ended well, else 1."""
    context = multiprocessing.get_context("fork")
    stopping = False
    worst = 0

    def start() -> Any:
        child = context.Process(target=_child_main, args=(run_child,), daemon=False)
        child.start()
        return child

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid:
                os.kill(child.pid, signal.SIGTERM)

    children = [start() for _ in range(processes)]
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while children:
            wait([child.sentinel for child in children], timeout=1.0)
            for child in [c for c in children if not c.is_alive()]:
                children.remove(child)
                code = child.exitcode or 0
                if stopping or (burst and code == 0):
                    worst = max(worst, abs(code))
                    continue
                log.warning("worker process %s exited with %s; restarting", child.pid, code)
                time.sleep(RESTART_DELAY)
                if not stopping:  # a SIGTERM during the delay: the stop wins over the restart
                    children.append(start())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if worst else 0


def _child_main(run_child: Callable[[], int]) -> None:
    """A worker process: SIGTERM comes from the supervisor; SIGINT (Ctrl-C reaches the whole
    process group) is ignored, so one Ctrl-C is one graceful stop, not two signals."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os._exit(run_child())
