"""Small helpers the test tiers share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

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


# JSON values for property tests of arguments (B5): text with NUL, RTL marks, quotes and SQL,
# integers far past 64 bits, finite floats, nested lists and objects.
json_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["\x00", "a\x00b", "😀", "é", "\u202e", "\\u0000", '"', "'; DROP TABLE roadie_jobs;--"]
    ),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=2**63, max_value=2**256),
        st.integers(min_value=-(2**256), max_value=-(2**63) - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        json_text,
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=20,
)
json_args = st.dictionaries(json_text, json_values, max_size=5)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a.hex() == b.hex()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b
