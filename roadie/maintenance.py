"""Background upkeep every worker runs: the lease reaper, the timeout expirer, the stager of
scheduled jobs that came due, the pruner of long-gone workers, and the pruner of old finished
jobs (which keeps hourly rollups of them).

Each runs as `run_once()` (what tests call) inside a small loop with `start()`/`stop()`. Every
worker runs one, so upkeep never depends on a special node; their writes are fenced or
re-checked row by row, so several running at once change each job once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from roadie.backends.base import Backend
from roadie.errors import DatabaseUnavailable
from roadie.jobs import MAX_LOST_ATTEMPTS, Fence, Job
from roadie.retry import DEFAULT_BACKOFF, Decision, decide_expiry

log = logging.getLogger("roadie")
WORKER_MEMORY = 7 * 86400.0  # workers stopped or silent this long are forgotten
PRUNE_EVERY = 3600.0  # seconds between two prunings of the workers table by one worker
JOB_PRUNE_EVERY = 300.0  # seconds between two prunings of old jobs by one worker, once caught up
JOB_PRUNE_BATCH = 2000  # jobs deleted per statement and transaction
JOB_PRUNE_BUDGET = 20_000  # jobs one pruning deletes at most; the rest waits for the next sweep
STAGE_BATCH = 5000  # scheduled jobs that came due moved back into the claim's index per statement
STAGE_BUDGET = 50_000  # ... and per staging
STAGE_EVERY = 1.0  # seconds between two stagings, between sweeps too
HOUR = 3600.0


def settle_failure(
    backend: Backend,
    fence: Fence,
    decision: Decision,
    outcome: str,
    error: str | None,
    traceback: str | None = None,
) -> bool:
    """Write a failed attempt's fate, fenced: back to pending after a delay, or failed for good."""
    if decision.retry:
        return backend.job_retry(fence, decision.delay, outcome, error, traceback)
    return backend.job_fail(fence, decision.failure or "permanent", outcome, error, traceback)


def expire_job(backend: Backend, job: Job, backoff: Any = DEFAULT_BACKOFF) -> bool:
    """End a running job's attempt as `expired` (timeout or admin), retrying it or failing it."""
    fence = Fence(job.id, job.attempt, job.locked_by or "", job.parent_id)
    decision = decide_expiry(job.attempt, job.max_attempts, backoff)
    error = f"timed out after {job.timeout:g}s" if job.timeout else "expired"
    return settle_failure(backend, fence, decision, "expired", error)


class Maintenance:
    """The reaper of expired leases and the expirer of jobs past their task's timeout."""

    def __init__(
        self,
        backend: Backend,
        interval: float = 5.0,
        backoff_for: Callable[[str], Any] | None = None,
        retention: float | None = None,
    ) -> None:
        self.backend = backend
        self.interval = interval
        self.retention = retention or None  # seconds finished jobs are kept; None: forever
        self._jobs_pruned_at: float | None = None  # monotonic time of the last caught-up pruning
        self._backoff_for = backoff_for or (lambda task: DEFAULT_BACKOFF)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at: float | None = None  # monotonic time of this worker's last pruning

    def run_once(self) -> Mapping[str, list[Job]]:
        """Reap expired leases and expire timed-out jobs once; returns what each touched."""
        reaped = self.reap()
        expired = [
            job
            for job in self.backend.job_list_timed_out()
            if expire_job(self.backend, job, self._backoff_for(job.task))
        ]
        for job in expired:
            log.warning("job %s attempt %s: expired after %gs", job.id, job.attempt, job.timeout)
        self.stage()
        if self._pruned_at is None or time.monotonic() - self._pruned_at > PRUNE_EVERY:
            self.backend.worker_prune(self.backend.clock_now() - timedelta(seconds=WORKER_MEMORY))
            self._pruned_at = time.monotonic()
        if self.retention is not None and (
            self._jobs_pruned_at is None
            or time.monotonic() - self._jobs_pruned_at > JOB_PRUNE_EVERY
        ):
            pruned, caught_up = self.prune_jobs()
            if pruned:
                log.info("pruned %d finished jobs older than %gs", pruned, self.retention)
            if caught_up:
                self._jobs_pruned_at = time.monotonic()
        return {"reaped": reaped, "expired": expired}

    def prune_jobs(
        self, budget: int = JOB_PRUNE_BUDGET, batch: int = JOB_PRUNE_BATCH
    ) -> tuple[int, bool]:
        """Delete finished jobs of the whole hours older than the retention, oldest hour first,
        `batch` per transaction, at most `budget`; failures awaiting review stay. Each hour's
        rollups are started first (percentiles, if absent) and every batch adds its jobs to them
        in its own transaction, so a crash or another pruner never counts a job twice.
        Returns (jobs deleted, whether nothing prunable is left)."""
        if self.retention is None:
            return 0, True
        now = self.backend.clock_now()
        cutoff = now.timestamp() - self.retention
        before = datetime.fromtimestamp(cutoff - cutoff % HOUR, tz=UTC)
        pruned = 0
        while pruned < budget:
            hour = self.backend.job_prune_oldest_hour(before)
            if hour is None:
                return pruned, True
            self.backend.job_prune_hour(hour)
            while pruned < budget:
                limit = min(batch, budget - pruned)
                deleted = self.backend.job_prune(hour, limit)
                pruned += deleted
                if deleted == 0:
                    if self.backend.job_prune_oldest_hour(before) == hour:
                        return pruned, False  # another pruner holds the rest of this hour
                    break
                if deleted < limit:
                    break
        return pruned, False

    def stage(self) -> int:
        """Move scheduled jobs that came due back into the claim's index (migration 0008), a
        batch per statement. Claims take due jobs either way: this keeps the part of the claim
        that looks among scheduled jobs short after many came due at once."""
        staged = 0
        while staged < STAGE_BUDGET:
            moved = self.backend.job_stage(STAGE_BATCH)
            staged += moved
            if moved < STAGE_BATCH:
                break
        return staged

    def reap(self) -> list[Job]:
        """Return the jobs of expired leases to the queue (or fail them: lost too often)."""
        reaped = self.backend.lease_reap(MAX_LOST_ATTEMPTS)
        for job in reaped:
            log.warning("job %s attempt %s: worker lost, now %s", job.id, job.attempt, job.state)
        return reaped

    def start(self) -> None:
        """Reap (and stage) once now, before the worker's first claim, then sweep on a thread.
        Workers that die sooner than a sweep after starting (a job at the head of the queue that
        kills them) would otherwise never reap: lost jobs would stay leased and never reach
        their limit."""
        try:
            self.reap()
            self.stage()
        except DatabaseUnavailable as exc:
            log.warning("maintenance skipped: %s", exc)
        except Exception:  # a bug must not stop the worker from starting
            log.exception("maintenance failed")
        self._thread = threading.Thread(target=self._loop, name="roadie-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        """A sweep every interval (jittered), and staging every STAGE_EVERY in between: when
        many scheduled jobs come due at once, claims sort them until they are staged."""
        next_sweep = time.monotonic() + self.interval * random.uniform(0.8, 1.2)
        while not self._stop.wait(max(0.0, min(STAGE_EVERY, next_sweep - time.monotonic()))):
            try:
                if time.monotonic() < next_sweep:
                    self.stage()
                    continue
                next_sweep = time.monotonic() + self.interval * random.uniform(0.8, 1.2)
                self.run_once()
            except DatabaseUnavailable as exc:
                log.warning("maintenance skipped: %s", exc)
            except Exception:  # a bug must not end upkeep for the life of the worker
                log.exception("maintenance failed")
