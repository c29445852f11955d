"""The worker: claims due jobs in batches under a lease, runs them, and records each outcome once.

Threads of one worker process:
- the claim loop (the caller's thread): fair batched claims, timeouts, graceful stop; a claim
  also takes up to `prefetch` jobs ahead of the free slots, held under lease in the worker's
  hands (renewed, self-fenced, released at a graceful stop) and started as slots free;
- the heartbeat: registers the worker, renews the leases of the jobs in hand, and gives a job
  up itself when its lease could not be renewed for most of its length;
- the completer: writes the results of completed jobs in batches, one statement each;
- the waker: blocks on the database's wake-up (NOTIFY, or SQLite's data_version) for new jobs;
- maintenance: the lease reaper and timeout expirer that every worker runs;
- the job threads and, for `async def` tasks, one event loop.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from roadie.backends.base import Backend, Completion, WorkerInfo
from roadie.errors import DatabaseUnavailable
from roadie.failpoints import failpoint
from roadie.jobs import Job
from roadie.maintenance import Maintenance, settle_failure
from roadie.retry import DEFAULT_BACKOFF, decide_expiry, retry_at_once
from roadie.worker.completer import Completer
from roadie.worker.execution import Execution, Outcome, RunnableTask, was_lost
from roadie.worker.executor import EventLoopThread, ThreadPool

log = logging.getLogger("roadie")
MAX_RECONNECT_DELAY = 5.0
SELF_FENCE_FRACTION = 2 / 3  # give a job up after this much of its lease without a renewal
# Automatic claim-ahead: hold about this many seconds of work beyond the free slots (measured
# from the worker's recent completion rate), at most PREFETCH_AUTO_CAP jobs. Short jobs then
# come in large claims, while a worker of slow jobs holds none that another could start.
PREFETCH_HORIZON = 0.05
PREFETCH_AUTO_CAP = 256
RATE_WINDOW = 0.1  # seconds between two measurements of the completion rate
REFILL_DIVISOR = 4  # claim again once the held jobs are down to a quarter of the prefetch
# The cyclic garbage collector's first threshold while a worker runs (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000


class Worker:
    """One worker process's engine; `run()` returns the exit code."""

    def __init__(
        self,
        backend: Backend,
        tasks: Mapping[str, RunnableTask],
        queues: Sequence[str],
        *,
        concurrency: int = 4,
        lease: float = 30.0,
        burst: bool = False,
        poll_interval: float = 0.5,
        grace: float = 30.0,
        sweep_interval: float = 5.0,
        prefetch: int | None = None,
        retention: float | None = None,
    ) -> None:
        self.backend = backend
        self.tasks = tasks
        self.queues = list(queues)
        self.concurrency = concurrency
        # Jobs claimed ahead of free slots, waiting to start; None sizes it from the completion
        # rate (see PREFETCH_HORIZON). A held job is `running`, `started_at` stamped, from its claim.
        self.prefetch_auto = prefetch is None
        self.prefetch = prefetch or 0
        self._rate = 0.0  # completions per second, smoothed, for the automatic prefetch
        self._rate_mark = (time.monotonic(), 0)  # (when, self.processed then)
        self._buffer: deque[Execution] = deque()  # claimed, in `_inflight`, not yet started
        self.lease = lease
        self.burst = burst
        self.poll_interval = poll_interval
        self.grace = grace
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease_lost = 0  # fenced writes refused and jobs given up: results discarded
        self.processed = 0
        # Jobs in hand: prefetched, running, or completed and waiting for the completer.
        self._inflight: dict[tuple[int, int], Execution] = {}
        self._running = 0  # of those, jobs whose handler has a slot (running or recording)
        self._inflight_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._hard_stop = threading.Event()
        self._threads_stop = threading.Event()
        self._turn = 0
        self._pool = ThreadPool(concurrency)
        self._loop = EventLoopThread()
        self._completer = Completer(self)
        self._maintenance = Maintenance(backend, sweep_interval, self._backoff_for, retention)
        self._info = WorkerInfo(
            self.id, socket.gethostname(), os.getpid(), self.queues, concurrency
        )

    # -- the claim loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Serve the queues until stopped (SIGTERM/SIGINT or `stop()`), or until idle in burst mode."""
        with _collecting_less():
            return self._run()

    def _run(self) -> int:
        self._install_signal_handlers()
        log.info(
            "worker %s serving %s with concurrency %d",
            self.id,
            ",".join(self.queues),
            self.concurrency,
        )
        threads = [
            threading.Thread(target=self._heartbeat_loop, name="roadie-heartbeat", daemon=True),
            threading.Thread(target=self._waker_loop, name="roadie-waker", daemon=True),
            threading.Thread(target=self._fence_loop, name="roadie-fence", daemon=True),
        ]
        for thread in threads:
            thread.start()
        self._maintenance.start()
        reconnect_delay = 0.1
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                self._expire_overdue()
                busy = bool(self._inflight)  # burst: a job ending after the claim may add jobs
                try:
                    claimed = self._claim()
                except DatabaseUnavailable as exc:
                    log.warning("claim failed, retrying in %.1fs: %s", reconnect_delay, exc)
                    self._stopping.wait(reconnect_delay)
                    reconnect_delay = min(reconnect_delay * 2, MAX_RECONNECT_DELAY)
                    continue
                reconnect_delay = 0.1
                self._hold(claimed)
                self._start_buffered()
                if self.burst and not claimed and not busy:
                    break
                if not claimed or self._free_slots() == 0:
                    self._wake.wait(self._wait_time())
                    self._start_buffered()  # slots freed while waiting: no claim needed first
        finally:
            self._shutdown(threads)
        return 0

    def stop(self, graceful: bool = True) -> None:
        """Stop claiming; in-flight jobs get the grace period unless `graceful` is False."""
        if not graceful:
            self._hard_stop.set()
        self._stopping.set()
        self._wake.set()

    def _free_slots(self) -> int:
        return self.concurrency - self._running

    def _claim(self) -> list[Job]:
        """Claim up to the free capacity plus the prefetch room, shared fairly: each queue gets
        an equal share first (starting from a rotating queue), then queues with more work take
        what is left. While the prefetch buffer is more than a quarter full, claim nothing."""
        self._tune_prefetch()
        if self._buffer and len(self._buffer) > self.prefetch // REFILL_DIVISOR:
            return []
        # With a suspect in hand (a job that was running when a worker was lost), hold nothing
        # ahead and take no other suspect: if it kills this process, it takes few jobs with it.
        suspect = any(execution.suspect for execution in list(self._inflight.values()))
        free = self._free_slots() - len(self._buffer) + (0 if suspect else self.prefetch)
        if free <= 0:
            return []
        order = (
            self.queues[self._turn % len(self.queues) :]
            + self.queues[: self._turn % len(self.queues)]
        )
        self._turn += 1
        share = math.ceil(free / len(order))
        claimed: list[Job] = []
        hungry = []
        for queue in order:
            want = min(share, free - len(claimed))
            if want <= 0:
                break
            got = self.backend.job_claim(self.id, queue, want, self.lease, 0 if suspect else 1)
            fresh = [job for job in got if not was_lost(job)]
            suspect = suspect or len(fresh) < len(got)
            claimed += got
            if len(got) == want:
                hungry.append(queue)
        for queue in hungry:
            want = free - len(claimed)
            if want <= 0:
                break
            claimed += self.backend.job_claim(self.id, queue, want, self.lease, 0)
        return claimed

    def _tune_prefetch(self) -> None:
        """Size the automatic prefetch to about PREFETCH_HORIZON seconds of recent throughput."""
        if not self.prefetch_auto:
            return
        now = time.monotonic()
        since, processed_then = self._rate_mark
        if now - since < RATE_WINDOW:
            return
        rate = (self.processed - processed_then) / (now - since)
        self._rate = (self._rate + rate) / 2
        self._rate_mark = (now, self.processed)
        self.prefetch = min(PREFETCH_AUTO_CAP, int(self._rate * PREFETCH_HORIZON))

    def _wait_time(self) -> float:
        deadlines = [
            ex.deadline
            for ex in list(self._inflight.values())
            if ex.deadline and not ex.settled and not ex.handed_off
        ]
        if not deadlines:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, min(deadlines) - time.monotonic()))

    def _hold(self, jobs: list[Job]) -> None:
        """Take claimed jobs into the worker's hands (leased and renewed from now on), queued
        to start as slots free."""
        for job in jobs:
            execution = Execution(
                job, self.id, self.backend, self.tasks.get(job.task), self.tasks, started=False
            )
            with self._inflight_lock:
                self._inflight[(job.id, job.attempt)] = execution
            self._buffer.append(execution)

    def _take_buffered(self) -> Execution | None:
        """The next held job that may start, its slot reserved; None when no slot is free or
        nothing is held. The claim loop calls it, and so does a job thread that just freed a
        slot (see `_run_sync`)."""
        while True:
            with self._inflight_lock:
                if not self._buffer or self._running >= self.concurrency:
                    return None
                if self._stopping.is_set():
                    return None
                execution = self._buffer.popleft()
                self._running += 1
            with execution.lock:
                given_up = execution.settled  # by the self-fence while it waited
                lost = not given_up and execution.ctx.cancelled  # its lease was not renewed
                execution.settled = True if lost else execution.settled
            if not (given_up or lost):
                return execution
            with self._inflight_lock:
                self._running -= 1
                self._inflight.pop((execution.job.id, execution.job.attempt), None)
            if lost:
                self._lease_lost(execution, "not started")

    def _start_buffered(self) -> None:
        """Start held jobs in the free slots, in claim order."""
        while (execution := self._take_buffered()) is not None:
            self._start(execution)

    def _start(self, execution: Execution) -> None:
        """Run a job whose slot is reserved: on the event loop if async, else on a job thread."""
        execution.start()  # its timeout runs from now
        if execution.is_async:
            execution.future = self._loop.submit(execution.run_async())
            execution.future.add_done_callback(
                lambda future: self._pool.submit(
                    lambda: self._finish(execution, _result_of(execution, future))
                )
            )
        else:
            self._pool.submit(lambda: self._run_sync(execution))

    def _run_sync(self, execution: Execution) -> None:
        """Run a sync job, then the held jobs after it on this same thread while it has the
        slot: a short job's slot passes straight to the next, not through the claim loop."""
        next_one: Execution | None = execution
        while next_one is not None:
            self._finish(next_one, next_one.run_sync())
            next_one = self._next_sync()

    def _next_sync(self) -> Execution | None:
        """The next held sync job, started on the slot this thread holds; held async jobs met
        on the way go to the event loop."""
        while (execution := self._take_buffered()) is not None:
            if not execution.is_async:
                execution.start()
                return execution
            self._start(execution)
        return None

    # -- recording outcomes ------------------------------------------------------------------

    def _finish(self, execution: Execution, outcome: Outcome) -> None:
        if self._hand_off(execution, outcome):
            with self._inflight_lock:
                self._running -= 1  # its slot is free; the job stays in hand until written
            self._wake_if_needed()
            return
        try:
            self._settle(execution, outcome)
        except Exception:
            log.exception("job %s: recording its outcome failed", execution.job.id)
        finally:
            execution.ctx.discard_transaction()
            with self._inflight_lock:
                self._inflight.pop((execution.job.id, execution.job.attempt), None)
                self._running -= 1
                self.processed += 1
            self._wake.set()

    def _wake_if_needed(self) -> None:
        """Wake the claim loop when it has something to do: claim (the buffer is down to its
        refill mark), or start jobs and notice the end of a burst (nothing is held). A held job
        needs no wake-up: the job thread that freed the slot starts it."""
        if len(self._buffer) <= self.prefetch // REFILL_DIVISOR or self._stopping.is_set():
            self._wake.set()

    def _hand_off(self, execution: Execution, outcome: Outcome) -> bool:
        """Give a plain completion (a result; no transaction, no children spawned) to the
        completer, to be written with others in one statement; False if it must be written here."""
        if (
            outcome.decision is not None
            or execution.ctx.open_transaction is not None
            or execution.ctx.spawned
        ):
            return False
        assert outcome.result_json is not None
        with execution.lock:
            if execution.settled:
                return False  # expired or given up meanwhile: `_settle` says it was discarded
            execution.handed_off = True
        completion = Completion(execution.fence, outcome.result_json, self.backend.clock.now())
        if self._completer.submit(execution, completion):
            return True
        execution.handed_off = False  # the worker has stopped: record it here
        return False

    def _completed(self, executions: list[Execution]) -> None:
        """The completer wrote (or gave up) these jobs: they leave the worker's hands."""
        with self._inflight_lock:
            for execution in executions:
                self._inflight.pop((execution.job.id, execution.job.attempt), None)
            self.processed += len(executions)
        self._wake.set()

    def _settle(self, execution: Execution, outcome: Outcome) -> None:
        """Make the attempt's one final write, fenced, unless the job was already given up."""
        with execution.lock:
            if execution.settled:
                log.info(
                    "job %s attempt %s: result discarded (job was given up)",
                    execution.job.id,
                    execution.job.attempt,
                )
                return
            written = self._write(execution, lambda: self._record(execution, outcome))
            execution.settled = True
        if written is False:
            self._lease_lost(execution, "result discarded")

    def _record(self, execution: Execution, outcome: Outcome) -> bool:
        fence, ctx = execution.fence, execution.ctx
        tx = ctx.open_transaction
        if outcome.decision is None and tx is not None and tx.finished:
            # An earlier try lost the completion transaction, and the task's writes with it:
            # the job must run again rather than complete without them.
            job = execution.job
            decision = retry_at_once(job.attempt, job.max_attempts)
            outcome = Outcome(
                decision=decision,
                attempt_outcome="retry",
                error="the completion transaction was lost with its connection",
            )
        if outcome.decision is None:
            assert outcome.result_json is not None
            children, rules = ctx.spawned, execution.task.rules if execution.task else None

            def where() -> str:
                return f"{fence.job_id}:{fence.attempt}"

            if tx is None:
                done = self.backend.job_complete(fence, outcome.result_json, None, children, rules)
                failpoint("complete.after_commit", where)
                return done
            tx.finished = True  # kept on ctx until committed: a failure here is seen above
            try:
                done = self.backend.job_complete(fence, outcome.result_json, tx, children, rules)
            except DatabaseUnavailable:
                tx.rollback()
                raise
            failpoint("complete.before_commit", where)
            (tx.commit if done else tx.rollback)()
            failpoint("complete.after_commit", where)
            ctx.open_transaction = None
            return done
        if tx is None or not tx.finished:  # a lost one stays: a retry of this write sees it too
            ctx.discard_transaction()
        return settle_failure(
            self.backend,
            fence,
            outcome.decision,
            outcome.attempt_outcome,
            outcome.error,
            outcome.traceback,
        )

    def _write(self, execution: Execution, write: Callable[[], bool]) -> bool | None:
        """Run a fenced write, retrying while the database is away; None if the job was given up."""
        delay = 0.1
        while True:
            try:
                return write()
            except DatabaseUnavailable as exc:
                if self._hard_stop.is_set() or self._past_self_fence(execution):
                    log.warning("job %s: gave up recording its outcome: %s", execution.job.id, exc)
                    return None
                log.warning(
                    "job %s: recording its outcome failed, retrying: %s", execution.job.id, exc
                )
                time.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

    def _lease_lost(self, execution: Execution, what: str) -> None:
        self.lease_lost += 1
        execution.cancel()
        log.warning(
            "job %s attempt %s: lease lost (LeaseLost), %s",
            execution.job.id,
            execution.job.attempt,
            what,
        )

    def _past_self_fence(self, execution: Execution) -> bool:
        return time.monotonic() - execution.renewed_at > self.lease * SELF_FENCE_FRACTION

    def _expire_overdue(self) -> None:
        """Jobs past their task's timeout: cancel them and end the attempt as expired, fenced."""
        now = time.monotonic()
        for execution in list(self._inflight.values()):
            if (
                execution.deadline is None
                or now < execution.deadline
                or execution.settled
                or execution.handed_off  # it returned in time; the completer writes it
            ):
                continue
            job = execution.job
            decision = decide_expiry(job.attempt, job.max_attempts, self._backoff_for(job.task))
            outcome = Outcome(
                decision=decision,
                attempt_outcome="expired",
                error=f"timed out after {job.timeout:g}s",
            )
            log.warning("job %s attempt %s: timed out after %gs", job.id, job.attempt, job.timeout)
            self._settle(
                execution, outcome
            )  # first, so the cancelled handler's outcome is too late
            execution.cancel()

    def _backoff_for(self, task_name: str) -> Any:
        task = self.tasks.get(task_name)
        return task.backoff if task is not None else DEFAULT_BACKOFF

    # -- heartbeat and wake-ups --------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = self.lease / 3
        wait = 0.0
        while not self._threads_stop.wait(wait):
            try:
                beat = self._beat()
            except Exception:  # a bug must not end the heartbeat: leases would lapse
                log.exception("heartbeat failed")
                beat = False
            wait = interval if beat else min(1.0, interval)

    def _beat(self) -> bool:
        """Register the worker and renew its leases; True if the database answered."""
        executions = [ex for ex in list(self._inflight.values()) if not ex.settled]
        sent_at = time.monotonic()
        try:
            self.backend.worker_heartbeat(self._info)
            renewed = self.backend.lease_renew(self.id, [ex.fence for ex in executions], self.lease)
        except DatabaseUnavailable as exc:
            log.warning("heartbeat failed: %s", exc)
            self._give_up_unrenewed(executions)
            return False
        for execution in executions:
            if (execution.job.id, execution.job.attempt) in renewed:
                execution.renewed_at = sent_at
                execution.ctx.flush_progress()
            elif not execution.settled:
                execution.cancel()  # cancelled, expired or reaped elsewhere: its write will be refused
        return True

    def _fence_loop(self) -> None:
        """Apply the self-fence by the monotonic clock whatever the heartbeat is doing: its
        renewal can hang without an error (a blackholed network) or wait for a connection
        longer than the lease, and the jobs must not run on past their leases meanwhile."""
        while not self._threads_stop.wait(min(1.0, self.lease / 10)):
            self._give_up_unrenewed(list(self._inflight.values()))

    def _give_up_unrenewed(self, executions: list[Execution]) -> None:
        """Stop treating a job as ours before its lease can run out in the database."""
        for execution in executions:
            if execution.settled or not self._past_self_fence(execution):
                continue
            if not execution.lock.acquire(blocking=False):
                continue  # its outcome is being written, fenced: that write decides
            try:
                given_up, execution.settled = not execution.settled, True
            finally:
                execution.lock.release()
            if given_up:
                self._lease_lost(execution, "given up: its lease could not be renewed")

    def _waker_loop(self) -> None:
        delay = 0.1
        while not self._threads_stop.is_set():
            try:
                if self.backend.wait_for_jobs(self.queues, timeout=0.1):
                    self._wake.set()
                delay = 0.1
            except Exception as exc:  # the database away, or a bug: poll more slowly, never stop
                if not isinstance(exc, DatabaseUnavailable):
                    log.exception("waiting for new jobs failed")
                self._threads_stop.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)

    # -- stopping ----------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum: int, frame: Any) -> None:
            graceful = not self._stopping.is_set()
            log.info(
                "worker %s: %s, %s",
                self.id,
                signal.Signals(signum).name,
                "stopping gracefully" if graceful else "stopping now",
            )
            self.stop(graceful=graceful)

        signal.signal(signal.SIGTERM, handle)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a supervisor's child ignores it
            signal.signal(signal.SIGINT, handle)

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        """Release the jobs held but not started; let in-flight jobs finish within the grace
        period, then release the rest."""
        while self._buffer:
            execution = self._buffer.popleft()
            self._release(execution, started=False)
            with self._inflight_lock:
                self._inflight.pop((execution.job.id, execution.job.attempt), None)
        deadline = time.monotonic() + self.grace
        while self._inflight and time.monotonic() < deadline and not self._hard_stop.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
            self._expire_overdue()
        for execution in list(self._inflight.values()):
            if not execution.handed_off:
                self._release(execution)
        # Completions handed over are written before the worker says it stopped; the heartbeat
        # keeps their leases meanwhile (on a hard stop, a failed write is not retried: those
        # jobs stay running until the reaper returns them).
        self._completer.close()
        self._threads_stop.set()
        self._maintenance.stop()
        for thread in threads:
            thread.join(timeout=5)
        self._pool.shutdown()
        self._loop.shutdown()
        try:
            self.backend.worker_stop(self.id)
        except DatabaseUnavailable as exc:
            log.warning("could not mark worker %s stopped: %s", self.id, exc)
        log.info("worker %s stopped after %d jobs", self.id, self.processed)

    def _release(self, execution: Execution, started: bool = True) -> None:
        """Hand an unfinished job back to the queue (a new attempt later), fenced."""
        job = execution.job
        decision = retry_at_once(job.attempt, job.max_attempts)
        outcome = Outcome(
            decision=decision,
            attempt_outcome="retry",
            error="released: the worker stopped before the job "
            + ("finished" if started else "started"),
        )
        log.info("job %s attempt %s: released at shutdown", job.id, job.attempt)
        self._settle(execution, outcome)
        execution.cancel()


def _result_of(execution: Execution, future: Any) -> Outcome:
    """An async task's outcome; one cancelled by the worker was usually settled already."""
    return execution.cancelled_outcome() if future.cancelled() else future.result()


_gc_lock = threading.Lock()
_gc_workers = 0  # workers running in this process
_gc_saved = gc.get_threshold()  # the collector's thresholds before the first of them


@contextmanager
def _collecting_less() -> Iterator[None]:
    """Spend less of a busy worker on the cyclic garbage collector, which took a tenth of its
    CPU: every job allocates a few dozen objects, so collections came every few jobs, and each
    older one walked everything loaded at start-up as well. Freeze what is loaded by now (the
    app and its libraries live as long as the process) and collect young objects after 10,000
    allocations instead of 700. A job's own objects form no cycles (a test holds them to it);
    a task's cycles are still collected, a little later. The last worker of the process to
    return restores the collector."""
    global _gc_workers, _gc_saved
    with _gc_lock:
        if _gc_workers == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_gc_saved[0], GC_YOUNG_THRESHOLD), *_gc_saved[1:])
        _gc_workers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_workers -= 1
            if _gc_workers == 0:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()
