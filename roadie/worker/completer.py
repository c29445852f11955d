"""The completer: writes the results of a worker's finished jobs in batches (group commit).

A job that completes with a result, with no completion transaction, no children and no parent —
the common case — is handed here by its job thread, which then takes the next job. The completer
takes whatever has been handed to it so far, writes it as one statement (`job_complete_many`,
still fenced per job), and repeats: no timer, so a lone job is written at once, and jobs that
finish while a batch commits go in the next one.

Until its batch commits, a job stays in the worker's hands: the heartbeat renews its lease, burst
mode and a graceful stop wait for it, and the self-fence gives it up if the database stays away
for most of a lease. If the worker dies first, the job simply stays running and the reaper
returns it to the queue (at-least-once execution, completion recorded once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from roadie.backends.base import Completion
from roadie.errors import DatabaseUnavailable
from roadie.failpoints import failpoint

if TYPE_CHECKING:
    from roadie.worker import Worker
    from roadie.worker.execution import Execution

log = logging.getLogger("roadie")
MAX_BATCH = 500  # jobs per statement
MAX_QUEUED = 1000  # jobs waiting for a batch; a job thread handing over more waits (backpressure)
MAX_RETRY_DELAY = 5.0
LINGER_SECONDS = 0.002  # wait this long for another completion while the worker is busy...
LINGER_BATCH = 64  # ...until the batch has this many

Item = tuple["Execution", Completion]


class Completer:
    """One thread per worker writing handed-over completions, a batch per statement.

    Hand-over is a list under one lock, not a `queue.Queue`: the completer takes everything
    handed over at once, and a job thread wakes it only when it may be waiting (the first item,
    or a lingering batch grown to LINGER_BATCH). A queue's put and get per job, each with its
    condition variables, were a tenth of a no-op job's CPU.
    """

    def __init__(
        self,
        worker: Worker,
        max_batch: int = MAX_BATCH,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._worker = worker
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._items: list[Item] = []
        self._lock = threading.Lock()
        self._handed = threading.Condition(self._lock)  # items were handed over, or closed
        self._room = threading.Condition(self._lock)  # the completer took items
        self._closed = False  # nothing more is taken
        self._done = False  # the thread wrote the last items and ended
        self._thread = threading.Thread(target=self._loop, name="roadie-completer", daemon=True)
        self._thread.start()

    def submit(self, execution: Execution, completion: Completion) -> bool:
        """Hand over a completed job (waits while too many wait to be written); False once
        closed: the caller writes it itself."""
        with self._lock:
            if self._closed:
                return False
            while len(self._items) >= self._max_queued and not self._done:
                self._room.wait()
            if self._done:
                return False
            self._items.append((execution, completion))
            if len(self._items) in (1, LINGER_BATCH):
                self._handed.notify()
            return True

    def waiting(self) -> int:
        """How many handed-over completions wait for a batch."""
        with self._lock:
            return len(self._items)

    def close(self, timeout: float | None = None) -> None:
        """Write everything handed over so far, then stop."""
        with self._lock:
            self._closed = True
            self._handed.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while batch := self._next_batch():
            try:
                self._write(batch)
            except Exception:  # a bug must not stop the completer: jobs would never end here
                log.exception("recording %d completions failed", len(batch))
                self._worker._completed([execution for execution, _ in batch])

    def _next_batch(self) -> list[Item]:
        """Up to max_batch items, waiting for the first, then lingering briefly while other jobs
        are running, so a burst of short jobs shares one commit (on SQLite, one fsync that also
        blocks the claims); a lone job is written at once. Empty once closed and written."""
        with self._lock:
            while not self._items and not self._closed:
                self._handed.wait()
            linger_until = time.monotonic() + LINGER_SECONDS
            while (
                len(self._items) < LINGER_BATCH
                and not self._closed
                and self._worker_busy()
                and (left := linger_until - time.monotonic()) > 0
            ):
                self._handed.wait(left)
            batch = self._items[: self._max_batch]
            del self._items[: self._max_batch]
            if not batch:
                self._done = True  # closed, and everything handed over is written
            self._room.notify_all()
            return batch

    def _worker_busy(self) -> bool:
        worker = self._worker
        return bool(worker._running or worker._buffer)

    def _write(self, batch: list[Item]) -> None:
        """Write one batch, fenced per job, retrying while the database is away."""
        worker = self._worker
        pending = batch
        lost: list[Execution] = []
        delay = 0.1
        while pending:
            locked = [execution.lock for execution, _ in pending]
            for lock in locked:
                lock.acquire()
            try:
                live = []
                for execution, result in pending:
                    if execution.settled:  # given up by the self-fence, or expired
                        log.info(
                            "job %s attempt %s: result discarded (job was given up)",
                            execution.job.id,
                            execution.job.attempt,
                        )
                    else:
                        live.append((execution, result))
                pending = live
                if not pending:
                    break
                try:
                    done = worker.backend.job_complete_many(
                        worker.id, [completion for _, completion in pending]
                    )
                except DatabaseUnavailable as exc:
                    failure: DatabaseUnavailable | None = exc
                else:
                    failure = None
                    failpoint(
                        "complete.after_commit",
                        lambda done=done: " ".join(f"{i}:{a}" for i, a in done),
                    )
                    for execution, _ in pending:
                        execution.settled = True
                        if (execution.job.id, execution.job.attempt) not in done:
                            lost.append(execution)
                    pending = []
                if failure is not None:
                    pending = self._give_up(pending, failure)
            finally:
                for lock in locked:
                    lock.release()
            if pending:
                log.warning("recording %d completions failed, retrying: %s", len(pending), failure)
                _sleep(delay, worker._hard_stop.is_set)
                delay = min(delay * 2, MAX_RETRY_DELAY)
        for execution in lost:
            worker._lease_lost(execution, "result discarded")
        worker._completed([execution for execution, _ in batch])

    def _give_up(self, pending: list[Item], exc: Exception) -> list[Item]:
        """After a failed write (locks held): give up the jobs past their self-fence, or all of
        them on a hard stop; they stay running in the database until the reaper returns them."""
        keep = []
        for execution, result in pending:
            if self._worker._hard_stop.is_set() or self._worker._past_self_fence(execution):
                log.warning("job %s: gave up recording its outcome: %s", execution.job.id, exc)
                execution.settled = True
            else:
                keep.append((execution, result))
        return keep


def _sleep(seconds: float, interrupted: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not interrupted() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
