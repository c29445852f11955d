"""One attempt of one job: run its handler, decide its outcome, and write it, fenced."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from roadie.backends.base import Backend
from roadie.children import Rules
from roadie.config import shown
from roadie.context import JobContext
from roadie.errors import InvalidInput, Permanent, UnknownTask
from roadie.jobs import Fence, Job, NewJob, clean_text, encode_json
from roadie.retry import Backoff, Decision, decide, describe, retry_at_once

MIN_HELD = 0.001  # a job started within a millisecond of its claim keeps the claim's stamp


class RunnableTask(Protocol):
    """What a worker needs of a task (the App's `Task` is one)."""

    name: str
    fn: Any
    retry_on: Mapping[type[BaseException], Backoff | None]
    backoff: Backoff
    role: str
    rules: Rules


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: completed with a result, or failed with a decision on what next."""

    result_json: str | None = None
    decision: Decision | None = None
    attempt_outcome: str = "complete"
    error: str | None = None
    traceback: str | None = None


class Execution:
    """A claimed job in this worker's hands, from claim to its one fenced final write."""

    def __init__(
        self,
        job: Job,
        worker_id: str,
        backend: Backend,
        task: RunnableTask | None,
        tasks: Mapping[str, RunnableTask] | None = None,
        started: bool = True,
    ):
        self.job = job
        self.task = task
        self.backend = backend
        self.tasks = tasks or {}
        self.fence = Fence(job.id, job.attempt, worker_id, job.parent_id)
        self.renewed_at = time.monotonic()  # when the lease was last taken or renewed
        self.claimed_at = (self.renewed_at, backend.clock.now())  # monotonic; frozen clock or None
        self.deadline: float | None = None  # set when the job starts (`start`)
        # Not a bound method: the context would refer back to this execution, and every job
        # would leave a reference cycle for the garbage collector instead of being freed.
        spawner = functools.partial(new_child, self.tasks) if task and task.role == "task" else None
        self.ctx = JobContext(job, self.fence, backend, None, spawner)
        if started:
            self.start()
        self.lock = threading.Lock()
        self.settled = False  # the final write was made, or the job was given up
        self.handed_off = False  # its completion waits in the completer (see completer.py)
        self.future: Future[Any] | None = None  # for async tasks
        self.is_async = task is not None and _is_async(task.fn)
        # A worker was lost while running it before: it may be what kills processes.
        self.suspect = was_lost(job)

    def start(self) -> None:
        """The job gets a slot: its timeout runs from now, and its recorded start too."""
        held = _seconds_since(*self.claimed_at, self.backend.clock.now())
        if held >= MIN_HELD:
            fence = self.fence  # (dataclasses.replace: 1.6 µs a job, this 0.65)
            self.fence = Fence(fence.job_id, fence.attempt, fence.worker_id, fence.parent_id, held)
            self.ctx._fence = self.fence
        if self.job.timeout:
            self.deadline = time.monotonic() + self.job.timeout
            self.ctx._deadline = self.deadline

    def cancel(self) -> None:
        """Tell the handler to stop: ctx.cancelled turns true; an async task is cancelled."""
        self.ctx.cancel()
        if self.future is not None:
            self.future.cancel()

    def run_sync(self) -> Outcome:
        if self.task is None:
            return unknown_task(self.job.task)
        try:
            args, kwargs = self.arguments()
            result = self.task.fn(self.ctx, *args, **kwargs)
        except BaseException as exc:  # every failure of a handler is recorded, even SystemExit
            return self.failed(exc)
        return self.completed(result)

    async def run_async(self) -> Outcome:
        assert self.task is not None
        try:
            args, kwargs = self.arguments()
            result = await self.task.fn(self.ctx, *args, **kwargs)
        except asyncio.CancelledError:
            return self.cancelled_outcome()
        except Exception as exc:
            return self.failed(exc)
        return self.completed(result)

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The handler's arguments: a task's own; for a callback, the parent becomes `ctx.job`
        and an `on_child_complete` callback gets the child's snapshot."""
        assert self.task is not None
        if self.task.role == "task":
            if not isinstance(self.job.args, dict):  # malformed in the database
                raise Permanent("malformed arguments: not a JSON object of keyword arguments")
            return (), self.job.args
        parent = self.backend.job_get(self.job.parent_id) if self.job.parent_id else None
        if parent is None:
            raise Permanent(f"callback job {self.job.id} has no parent job")
        self.ctx.job = parent
        if self.task.role == "complete_callback":
            return (), {}
        child = self.backend.job_get(self.job.args.get("child_id", 0))
        if child is None:
            raise Permanent(f"the child job {self.job.args.get('child_id')} no longer exists")
        return (child,), {}

    def cancelled_outcome(self) -> Outcome:
        """The handler was cancelled by the worker (lease lost): another attempt, if one is left."""
        decision = retry_at_once(self.job.attempt, self.job.max_attempts)
        return Outcome(decision=decision, attempt_outcome="cancelled", error="cancelled")

    def completed(self, result: Any) -> Outcome:
        try:
            return Outcome(result_json=encode_json(result, "results"))
        except InvalidInput as exc:
            return Outcome(
                decision=Decision(retry=False, failure="permanent"),
                attempt_outcome="failed",
                error=str(exc),
            )

    def failed(self, exc: BaseException) -> Outcome:
        assert self.task is not None
        decision = decide(
            exc, self.job.attempt, self.job.max_attempts, self.task.retry_on, self.task.backoff
        )
        return Outcome(
            decision=decision,
            attempt_outcome="retry" if decision.retry else "failed",
            error=clean_text(describe(exc)),
            traceback=clean_text("".join(traceback.format_exception(exc))),
        )


def new_child(tasks: Mapping[str, RunnableTask], task: Any, args: dict[str, Any]) -> NewJob:
    """Validate a job spawned by a running one (it is written with that job's completion)."""
    if isinstance(task, str):
        if task not in tasks:
            raise UnknownTask(f"unknown task {shown(task)}")
        task = tasks[task]
    if not hasattr(task, "app") or not hasattr(task, "overrides"):
        raise InvalidInput(f"ctx.spawn takes a task or a task name, not {shown(task)}")
    if task.overrides.idempotency_key is not None:  # a taken key would leave us waiting
        raise InvalidInput("ctx.spawn takes no idempotency_key: a child is written once")
    return task.app.new_job(task, args, task.overrides)


def was_lost(job: Job) -> bool:
    """A worker was lost while running this job before: it may be what killed the process."""
    return bool(job.attempts) and any(record.get("outcome") == "lost" for record in job.attempts)


@functools.cache
def _is_async(fn: Any) -> bool:
    """Asked for every job claimed: `inspect` takes a microsecond to answer it."""
    return inspect.iscoroutinefunction(fn)


def _seconds_since(monotonic: float, frozen: datetime | None, frozen_now: datetime | None) -> float:
    """Time since a claim: on the database clock when a test froze it, else real time."""
    if frozen is not None and frozen_now is not None:
        return (frozen_now - frozen).total_seconds()
    return time.monotonic() - monotonic


def unknown_task(name: str) -> Outcome:
    return Outcome(
        decision=Decision(retry=False, failure="permanent"),
        attempt_outcome="failed",
        error=f"unknown task {name!r}",
    )
