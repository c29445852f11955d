"""The App facade: tasks, enqueueing, the schema, workers; and the Task handle with `.options()`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from roadie.admin import Admin
from roadie.backends import check_database_url, open_backend
from roadie.backends.base import Backend
from roadie.children import CHILD_FAILURE_POLICIES, Rules
from roadie.clock import Clock
from roadie.config import (
    DEFAULT_MAX_ARGS_BYTES,
    MAX_DELAY_SECONDS,
    check_int,
    check_max_attempts,
    check_priority,
    check_queue,
    check_task_name,
    database_url,
    parse_duration,
    shown,
)
from roadie.errors import InvalidInput, UnknownTask
from roadie.jobs import Job, NewJob, encode_args
from roadie.migrate import migrate
from roadie.retry import DEFAULT_BACKOFF, Backoff, normalize_retry_on

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 20
WORKER_CONNECTIONS = 4  # a worker's claim loop, heartbeat, reaper and spare, beside its job threads


@dataclass(frozen=True)
class EnqueueOptions:
    """Per-enqueue choices; None means "the task's default"."""

    queue: str | None = None
    priority: int | None = None
    delay: Any = None
    run_at: datetime | None = None
    idempotency_key: str | None = None
    max_attempts: int | None = None


@dataclass(eq=False)
class Task:
    """A registered task. Call `.enqueue(**args)`, or `.options(...)` first to override defaults.

    `role` is "task", or "child_callback" / "complete_callback" for a parent's callbacks, which
    receive the parent as `ctx.job` (and the child as their second argument).
    """

    app: App
    fn: Callable[..., Any]
    name: str
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    retry_on: Mapping[type[BaseException], Backoff | None]
    backoff: Backoff
    overrides: EnqueueOptions = EnqueueOptions()
    role: str = "task"
    on_child_failure: str = "continue"
    child_callback: str | None = None
    complete_callback: str | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    @property
    def rules(self) -> Rules:
        """What this task's jobs do when the children they spawned end."""
        return Rules(self.child_callback, self.complete_callback, self.on_child_failure)

    def on_child_complete(self, fn: Callable[..., Any]) -> Task:
        """Register `fn(ctx, child)`: run once for each child that ends, as a job on this task's
        queue, with the parent as `ctx.job`. Raising Permanent fails the parent."""
        callback = self.app.register_task(fn, queue=self.queue, role="child_callback")
        self.child_callback = callback.name
        return callback

    def on_complete(self, fn: Callable[..., Any]) -> Task:
        """Register `fn(ctx)`: run once when every child (and every callback) has ended, before
        the parent completes, with the parent as `ctx.job`."""
        callback = self.app.register_task(fn, queue=self.queue, role="complete_callback")
        self.complete_callback = callback.name
        return callback

    def options(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: Any = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Task:
        """The same task with other defaults for the jobs it enqueues."""
        given = {
            "queue": queue,
            "priority": priority,
            "delay": delay,
            "run_at": run_at,
            "idempotency_key": idempotency_key,
            "max_attempts": max_attempts,
        }
        merged = replace(self.overrides, **{k: v for k, v in given.items() if v is not None})
        self.app.new_job(self, {}, merged)  # validate now, not at enqueue
        return replace(self, overrides=merged)

    def enqueue(self, **args: Any) -> Job:
        """Insert one job; returns its snapshot (the existing job for a taken idempotency key)."""
        return self.app.insert([self.app.new_job(self, args, self.overrides)])[0]

    def enqueue_many(self, args_list: Iterable[Mapping[str, Any]]) -> list[Job]:
        """Insert many jobs in one statement, all or nothing; returns them in input order."""
        if self.overrides.idempotency_key is not None:
            raise InvalidInput("enqueue_many takes no idempotency_key: a key names one job")
        if isinstance(args_list, Mapping | str | bytes):
            raise InvalidInput("enqueue_many takes a list of argument objects")
        new_jobs: list[NewJob] = []
        for args in args_list:
            if not isinstance(args, Mapping):
                raise InvalidInput(
                    f"enqueue_many takes argument objects, not {type(args).__name__}"
                )
            if not new_jobs:  # the options are the same for every job: checked once
                new_jobs.append(self.app.new_job(self, dict(args), self.overrides))
            else:
                args_json = encode_args(dict(args), self.app.max_args_bytes)
                new_jobs.append(new_jobs[0].with_args(args_json))
        return self.app.insert(new_jobs) if new_jobs else []

    def __call__(self, ctx: Any, **args: Any) -> Any:
        """Run the function directly, as the worker would (for tests)."""
        return self.fn(ctx, **args)


class App:
    """A roadie application: its tasks and its database. `with App(...) as app:` closes it."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        lease: Any = "30s",
        max_args_bytes: int = DEFAULT_MAX_ARGS_BYTES,
        retry_on: Any = (),
        clock: Clock | None = None,
        pool_size: int = 10,
        retention: Any = "7d",
    ) -> None:
        self.database_url = _database_url_or_default(database_url)
        self.retention = _retention(retention)
        self.lease = parse_duration(lease, "lease")
        if self.lease < 1:
            raise InvalidInput(f"bad lease {shown(lease)}: must be at least 1s")
        self.max_args_bytes = check_int(max_args_bytes, "max_args_bytes", (1, 1 << 30))
        self.retry_on = normalize_retry_on(retry_on)
        self.clock = clock
        self.pool_size = pool_size
        self.tasks: dict[str, Task] = {}
        self._backend: Backend | None = None

    # -- the database ------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.database_url, self.clock, self.pool_size)
        return self._backend

    @property
    def admin(self) -> Admin:
        return Admin(self.backend, self.tasks, self.max_args_bytes)

    def use_database(self, url: str) -> None:
        """Point the app at another database (the CLI's --database-url wins over the code's)."""
        check_database_url(url)
        self.close()
        self.database_url = url

    def migrate(self) -> list[int]:
        """Create or upgrade the schema; idempotent. Returns the versions applied now."""
        return migrate(self.backend)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tasks -------------------------------------------------------------------------------

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: Any = None,
        retry_on: Any = (),
        backoff: Backoff | None = None,
        on_child_failure: str = "continue",
    ) -> Any:
        """Register a function (sync or async, first parameter `ctx`) as a task.

        `on_child_failure`: when a child fails the parent ("continue": its other children run
        on; "cancel": those not yet started are cancelled).
        """

        def register(fn: Callable[..., Any]) -> Task:
            return self.register_task(
                fn,
                name=name,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                retry_on=retry_on,
                backoff=backoff,
                on_child_failure=on_child_failure,
            )

        return register(fn) if fn is not None else register

    def register_task(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout: Any = None,
        retry_on: Any = (),
        backoff: Backoff | None = None,
        on_child_failure: str = "continue",
        role: str = "task",
    ) -> Task:
        task_name = check_task_name(name or getattr(fn, "__name__", None))
        if task_name in self.tasks:
            raise InvalidInput(f"task {task_name!r} is registered twice")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidInput(f"bad backoff {shown(backoff)}: use roadie.Backoff(...)")
        if on_child_failure not in CHILD_FAILURE_POLICIES:
            raise InvalidInput(
                f"bad on_child_failure {shown(on_child_failure)}: use 'continue' or 'cancel'"
            )
        task = Task(
            app=self,
            fn=fn,
            name=task_name,
            queue=check_queue(queue),
            priority=check_priority(priority),
            max_attempts=check_max_attempts(max_attempts),
            timeout=parse_duration(timeout, "timeout") if timeout is not None else None,
            retry_on={**self.retry_on, **normalize_retry_on(retry_on)},
            backoff=backoff or DEFAULT_BACKOFF,
            role=role,
            on_child_failure=on_child_failure,
        )
        self.tasks[task_name] = task
        return task

    def get_task(self, name: str) -> Task:
        task = self.tasks.get(name) if isinstance(name, str) else None
        if task is None:
            raise UnknownTask(f"unknown task {shown(name)}")
        return task

    # -- jobs --------------------------------------------------------------------------------

    def enqueue(
        self,
        task_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: Any = None,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        """Enqueue a registered task by name."""
        task = self.get_task(task_name).options(
            queue=queue,
            priority=priority,
            delay=delay,
            run_at=run_at,
            idempotency_key=idempotency_key,
            max_attempts=max_attempts,
        )
        if args is not None and not isinstance(args, Mapping):
            raise InvalidInput(f"arguments must be a JSON object, not {type(args).__name__}")
        return self.insert([self.new_job(task, dict(args or {}), task.overrides)])[0]

    def get_job(self, job_id: int) -> Job | None:
        """The job's current snapshot with its children, or None if there is no such job."""
        return self.admin.find_job(job_id)

    def stats(self, queue: str | None = None, window: Any = "15m") -> dict[str, Any]:
        """Cluster-wide figures from the database: depth per state, throughput, duration
        percentiles, failure rate, retries, oldest lock and due job (see `Admin.stats`)."""
        return self.admin.stats(queue=queue, window=window)

    def new_job(self, task: Task, args: dict[str, Any], options: EnqueueOptions) -> NewJob:
        """Validate one job's arguments and options; raises InvalidInput, writes nothing."""
        if task.role != "task":
            raise InvalidInput(f"{task.name!r} is a callback: it runs when a child job ends")
        delay = parse_duration(options.delay, "delay") if options.delay is not None else 0.0
        if delay > MAX_DELAY_SECONDS:
            raise InvalidInput(f"bad delay {shown(options.delay)}: at most 10 years")
        key = options.idempotency_key
        if key is not None and not (isinstance(key, str) and 1 <= len(key) <= 255):
            raise InvalidInput(
                f"bad idempotency_key {shown(key)}: must be text of 1-255 characters"
            )
        if key is not None and ("\x00" in key or not _is_utf8(key)):
            raise InvalidInput(
                f"bad idempotency_key {shown(key)}: must be valid Unicode text without NUL"
            )
        return NewJob(
            queue=check_queue(task.queue if options.queue is None else options.queue),
            task=task.name,
            args_json=encode_args(args, self.max_args_bytes),
            priority=check_priority(
                task.priority if options.priority is None else options.priority
            ),
            max_attempts=check_max_attempts(
                task.max_attempts if options.max_attempts is None else options.max_attempts
            ),
            delay=delay,
            run_at=_check_run_at(options.run_at),
            idempotency_key=key,
            timeout=task.timeout,
        )

    def insert(self, jobs: list[NewJob]) -> list[Job]:
        return self.backend.job_insert(jobs)

    # -- workers -----------------------------------------------------------------------------

    def run_worker(
        self,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 4,
        prefetch: int | None = None,
        processes: int = 1,
        burst: bool = False,
        lease: Any = None,
        grace: Any = "30s",
        poll_interval: Any = "500ms",
        sweep_interval: Any = "5s",
        retention: Any = ...,
    ) -> int:
        """Run a worker until stopped (SIGTERM) or, with `burst`, until nothing is due.

        `queues` defaults to every queue the registered tasks use. Returns the exit code.
        `retention` (default: the app's) is how long finished jobs are kept; None or 0 keeps them.
        `prefetch` (default None: about 50 ms of recent throughput, at most 256) is how many
        jobs to claim ahead of free slots; 0 claims only for free slots.
        """
        from roadie.worker import Worker
        from roadie.worker.processes import supervise

        queue_list = [check_queue(q) for q in queues] if queues else self._task_queues()
        if not queue_list:
            raise InvalidInput("no queues to serve: register a task or pass queues=[...]")
        check_int(concurrency, "concurrency", (1, 1000))
        check_int(processes, "processes", (1, 64))
        if prefetch is not None:
            check_int(prefetch, "prefetch", (0, 1000))
        options = {
            "concurrency": concurrency,
            "prefetch": prefetch,
            "lease": parse_duration(lease, "lease") if lease is not None else self.lease,
            "burst": burst,
            "grace": parse_duration(grace, "grace"),
            "poll_interval": parse_duration(poll_interval, "poll interval"),
            "sweep_interval": parse_duration(sweep_interval, "sweep interval"),
            "retention": self.retention if retention is ... else _retention(retention),
        }

        if self.pool_size < concurrency + WORKER_CONNECTIONS:
            self.close()  # reopened on first use with room for every job thread
            self.pool_size = concurrency + WORKER_CONNECTIONS

        def run_one() -> int:
            return Worker(self.backend, self.tasks, queue_list, **options).run()

        if processes == 1:
            return run_one()
        self.close()  # each child opens its own connections

        def run_child() -> int:
            code = run_one()
            self.close()
            return code

        return supervise(run_child, processes, burst)

    def _task_queues(self) -> list[str]:
        return sorted({task.queue for task in self.tasks.values()})


def _database_url_or_default(url: str | None) -> str:
    chosen = database_url(url)
    check_database_url(chosen)
    return chosen


def _is_utf8(text: str) -> bool:
    """False for text holding a lone surrogate, which no database can store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_run_at(run_at: object) -> datetime | None:
    if run_at is None:
        return None
    if not isinstance(run_at, datetime):
        raise InvalidInput(f"bad run_at {shown(run_at)}: must be a datetime")
    if run_at.tzinfo is None:
        raise InvalidInput(f"bad run_at {run_at.isoformat()}: must be timezone-aware")
    now = datetime.now(UTC)
    if (run_at - now).total_seconds() > MAX_DELAY_SECONDS:
        raise InvalidInput(f"bad run_at {run_at.isoformat()}: at most 10 years ahead")
    return run_at.astimezone(UTC)


def _retention(value: Any) -> float | None:
    """Seconds finished jobs are kept before the pruner deletes them; None (or 0): forever."""
    if value is None:
        return None
    seconds = parse_duration(value, "retention")
    if seconds and seconds < 3600:
        raise InvalidInput(f"bad retention {shown(value)}: must be at least 1h, or 0 to keep all")
    return seconds or None
