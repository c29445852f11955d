"""Small helpers the test tiers share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def run_together(fn: Callable[[Any], Any], inputs: Sequence[Any]) -> list[Any]:
    """Call `fn(input)` for every input on its own thread, all released at once; the results
    (or the first error a thread raised)."""
    barrier = threading.Barrier(len(inputs))
    results: list[Any] = [None] * len(inputs)
    errors: list[BaseException] = []

    def call(index: int) -> None:
        barrier.wait()
        try:
            results[index] = fn(inputs[index])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str = "",
    *,
    interval: float = 0.05,
    detail: Callable[[], Any] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` s.

    On failure the message names `what` and, if given, what `detail()` says then.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"; {detail()}" if detail is not None else ""
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or predicate}{extra}"
            )
        time.sleep(interval)
