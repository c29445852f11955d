"""The completer's hand-over on its own (no database): every completion handed over is written
once, in batches, with backpressure, and nothing is taken after close."""

from __future__ import annotations

import threading
import time
from typing import Any

from roadie.worker.completer import Completer


class Idle:
    """What the completer reads of its worker: nothing running, so no lingering."""

    _running = 0
    _buffer = ()

    def _completed(self, executions: list[Any]) -> None: ...


class Recording(Completer):
    """Writes nothing; records each batch, taking a millisecond as a commit would, so that
    hand-overs pile up behind it (nothing to wait for: the time is the point)."""

    def __init__(self, **kwargs: Any) -> None:
        self.batches: list[list[Any]] = []
        super().__init__(Idle(), **kwargs)  # type: ignore[arg-type]

    def _write(self, batch: list[Any]) -> None:
        time.sleep(0.001)
        self.batches.append([execution for execution, _ in batch])


def test_every_completion_handed_over_is_written_once_in_bounded_batches() -> None:
    completer = Recording(max_batch=50, max_queued=100)
    most_waiting: list[int] = []

    def hand_over(thread: int) -> None:
        for n in range(2_000):
            assert completer.submit((thread, n), None)  # type: ignore[arg-type]
            most_waiting.append(completer.waiting())

    threads = [threading.Thread(target=hand_over, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    completer.close(10)
    written = [item for batch in completer.batches for item in batch]
    assert sorted(written) == [(t, n) for t in range(4) for n in range(2_000)]
    assert max(len(batch) for batch in completer.batches) <= 50
    assert max(most_waiting) <= 100  # backpressure: a full hand-over waits for room
    assert not completer.submit(("late", 0), None)  # type: ignore[arg-type]
