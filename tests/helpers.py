"""Small helpers the test tiers share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def run_together(fn: Callable[[Any], Any], inputs: Sequence[Any]) -> list[Any]:
    """Call `fn(input)` for every input on its own thread, all released at once; the results."""
    barrier = threading.Barrier(len(inputs))
    results: list[Any] = [None] * len(inputs)

    def call(index: int) -> None:
        barrier.wait()
        results[index] = fn(inputs[index])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.01)
