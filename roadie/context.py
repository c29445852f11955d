"""The `ctx` a task receives: its job, progress reports, cancellation, and the completion transaction."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from roadie.backends.base import Backend, Transaction
from roadie.errors import DatabaseUnavailable, InvalidInput, RoadieError
from roadie.jobs import Fence, Job, NewJob, encode_json

log = logging.getLogger("roadie")
PROGRESS_INTERVAL = 0.2  # seconds between progress writes; later reports wait for the heartbeat


class JobContext:
    """What a running task may see and do. One per attempt; discarded when the attempt ends."""

    def __init__(
        self,
        job: Job,
        fence: Fence,
        backend: Backend,
        deadline: float | None = None,
        spawner: Callable[[Any, dict[str, Any]], NewJob] | None = None,
    ):
        self.job = job  # for a callback, replaced by its parent before the handler runs
        self.own_job = job  # the job this attempt runs: a callback's own job, for instance
        self.spawned: list[NewJob] = []
        self._spawner = spawner
        self._fence = fence
        self._backend = backend
        self._deadline = deadline  # time.monotonic() past which the task's timeout has run out
        self._cancelled = False  # set once, from another thread: a plain flag is enough
        self._lock = threading.Lock()
        self._unsent_progress: str | None = None
        self._progress_sent_at = 0.0
        self.open_transaction: Transaction | None = None

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled, timed out or its lease lost: a long task should stop."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    def spawn(self, task: Any, **args: Any) -> None:
        """Add a child job: a task, a task name, or `task.options(queue=..., ...)`.

        Children are written with this job's completion, in one transaction: if the handler
        raises, or its worker dies first, none exist, and the retry spawns them again. The job
        then waits for them (`waiting`) and completes when they have all ended.
        """
        if self._spawner is None:
            raise RoadieError("ctx.spawn() is for tasks; a callback cannot spawn")
        self.spawned.append(self._spawner(task, args))

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is (0.0 to 1.0), for administrators; frequent calls are merged."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise InvalidInput(f"bad progress {fraction!r}: must be a number from 0 to 1")
        if not (math.isfinite(fraction) and 0 <= fraction <= 1):
            raise InvalidInput(f"bad progress {fraction!r}: must be a number from 0 to 1")
        if message is not None and not isinstance(message, str):
            raise InvalidInput(f"bad progress message {message!r}: must be text")
        text = encode_json({"fraction": float(fraction), "message": message}, "progress")
        with self._lock:
            self._unsent_progress = text
            due = time.monotonic() - self._progress_sent_at >= PROGRESS_INTERVAL
        if due:
            self.flush_progress()

    def flush_progress(self) -> None:
        """Write the latest unsent progress report, fenced; a lost lease cancels the context."""
        if self.open_transaction is not None:
            return  # the completion transaction may hold SQLite's write lock: report after it
        with self._lock:
            text, self._unsent_progress = self._unsent_progress, None
            self._progress_sent_at = time.monotonic()
        if text is None:
            return
        try:
            if not self._backend.job_progress(self._fence, text):
                self.cancel()
        except DatabaseUnavailable as exc:
            with self._lock:
                self._unsent_progress = self._unsent_progress or text
            log.debug("progress of job %s not written yet: %s", self.job.id, exc)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection whose transaction commits with the job's fenced completion, or never.

        Writes made here become visible only when the task returns and its completion is
        recorded; if the task then raises, or its lease was lost, they are rolled back. Make it
        the task's last step: the transaction (on SQLite, the write lock) is held until then.
        """
        if self.open_transaction is not None:
            raise RoadieError("ctx.transaction() can be used once per attempt")
        tx = self._backend.transaction_begin()
        self.open_transaction = tx
        try:
            yield tx.connection
        except BaseException as exc:
            lost = tx.lost()
            self.discard_transaction()
            if lost:  # not the task's fault: a transient error, so the job runs again
                reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                raise DatabaseUnavailable(f"completion transaction lost: {reason}") from exc
            raise

    def discard_transaction(self) -> None:
        """Roll back an open completion transaction (the attempt did not complete)."""
        tx, self.open_transaction = self.open_transaction, None
        if tx is not None and not tx.finished:
            tx.finished = True
            try:
                tx.rollback()
            except DatabaseUnavailable as exc:
                log.warning("job %s: rollback failed: %s", self.job.id, exc)
