"""The Backend protocol: one method per storage operation, noun first, one SQL file each.

Each dialect keeps its statements in `queries/<operation>.sql` under the same names, and its
migrations in `migrations/NNNN_name.sql` under the same numbers. Nothing outside `backends/`
touches SQL or a driver.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from importlib import resources
from itertools import groupby
from typing import Any, NamedTuple, Protocol

from roadie.children import (
    Rules,
    child_callback_key,
    complete_callback_key,
    hears_each_child,
    next_step,
)
from roadie.clock import Clock
from roadie.jobs import OPTIONAL_FIELDS, Fence, Job, NewJob, encode_json

# The columns of roadie_jobs the code reads and writes; the schema test holds the migrations to it.
JOB_COLUMNS = (
    "id", "queue", "task", "args", "priority", "state", "attempt", "max_attempts", "lost_count",
    "created_at", "run_at", "started_at", "finished_at", "result", "error", "failure",
    "needs_review", "progress",
    "parent_id", "locked_by", "lock_expires_at", "idempotency_key", "timeout", "attempts",
    "callback_key", "on_child_complete", "on_complete", "on_child_failure",
    "review_note", "reviewed_at", "args_history", "scheduled",
)  # fmt: skip
WORKER_COLUMNS = (
    "id", "host", "pid", "queues", "concurrency", "started_at", "heartbeat_at", "stopped_at",
)  # fmt: skip
QUEUE_COLUMNS = ("name", "paused", "changed_at", "changed_by")
AUDIT_COLUMNS = ("id", "at", "actor", "action", "params", "job_ids", "count")
ROLLUP_COLUMNS = (
    "queue", "task", "hour", "outcome", "jobs", "retries", "timed", "duration_sum",
    "p50", "p95", "p99",
)  # fmt: skip
SCHEMA = {
    "roadie_jobs": JOB_COLUMNS,
    "roadie_workers": WORKER_COLUMNS,
    "roadie_queues": QUEUE_COLUMNS,
    "roadie_audit": AUDIT_COLUMNS,
    "roadie_rollups": ROLLUP_COLUMNS,
}

PERCENTILES = ("p50", "p95", "p99")
BULK_INSERT_MIN = 32  # jobs: a smaller batch goes through the one-statement insert
CALLBACK_MAX_ATTEMPTS = 20  # a callback job's allowance (its own task's settings live in code)

QUERY_NAMES = frozenset(
    {
        "job_insert",
        "job_insert_one",
        "job_insert_bulk",
        "job_get",
        "job_get_many",
        "job_get_by_idempotency_key",
        "job_get_by_callback_key",
        "job_lock",
        "job_count_open",
        "job_insert_callbacks",
        "job_end_waiting",
        "job_cancel",
        "job_cancel_tree",
        "job_requeue",
        "job_reopen",
        "job_list_children",
        "job_list",
        "job_claim",
        "job_stage",
        "job_complete",
        "job_complete_many",
        "job_retry",
        "job_fail",
        "job_progress",
        "job_list_timed_out",
        "lease_renew",
        "lease_reap",
        "worker_heartbeat",
        "worker_stop",
        "worker_list",
        "worker_prune",
        "job_count",
        "job_purge",
        "job_review_resolve",
        "job_list_errors",
        "queue_set_paused",
        "queue_list",
        "audit_insert",
        "audit_list",
        "clock_now",
        "oldest_snapshot",
        "stats_depth",
        "stats_finished",
        "stats_retries",
        "stats_usual_durations",
        "stats_timeline",
        "job_prune_oldest_hour",
        "job_prune_pick",
        "job_prune_delete",
        "rollup_hour",
        "rollup_start",
        "rollup_add",
        "rollup_totals",
        "rollup_list",
    }
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_queries(package: str, own: frozenset[str] = frozenset()) -> dict[str, str]:
    """Every `queries/*.sql` of a dialect; refuses a dialect that lacks a name, or adds one
    that is not among its `own` (statements only its way of doing something needs)."""
    folder = resources.files(package).joinpath("queries")
    queries = {
        entry.name.removesuffix(".sql"): entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }
    if set(queries) != QUERY_NAMES | own:
        missing = sorted((QUERY_NAMES | own) - set(queries))
        extra = sorted(set(queries) - QUERY_NAMES - own)
        raise RuntimeError(f"{package}: queries missing {missing}, unexpected {extra}")
    return queries


def load_migrations(package: str) -> list[Migration]:
    """The numbered `migrations/NNNN_name.sql` files of a dialect, in order."""
    folder = resources.files(package).joinpath("migrations")
    migrations = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            migrations.append(
                Migration(int(number), rest.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
            )
    return sorted(migrations, key=lambda m: m.version)


@dataclass(frozen=True)
class JobQuery:
    """Filters of a job listing or count; None means "any". `before_id` pages (newest first)."""

    state: str | None = None
    queue: str | None = None
    task: str | None = None
    parent_id: int | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    finished_before: datetime | None = None
    error: str | None = None  # text in the last error, any case
    needs_review: bool | None = None
    before_id: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class QueueInfo:
    """A queue an administrator paused or resumed."""

    name: str
    paused: bool
    changed_at: datetime | None = None
    changed_by: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One administrative action: who, when, what (with its parameters), which jobs, how many."""

    id: int
    at: datetime
    actor: str
    action: str
    params: dict[str, Any]
    job_ids: list[int]
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    stopped_at: datetime | None = None
    jobs: int = 0  # running jobs it holds now (as read by worker_list)
    state: str | None = None  # alive, dead or stopped (as judged by Admin.workers)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v.isoformat() if isinstance(v, datetime) else v for k, v in self.__dict__.items()
        }


@dataclass
class Transaction:
    """An open transaction on a connection of roadie's database, handed to `ctx.transaction()`."""

    connection: Any
    commit: Callable[[], None]
    rollback: Callable[[], None]
    finished: bool = field(default=False)
    lost: Callable[[], bool] = field(default=lambda: False)  # its connection died under it


class Completion(NamedTuple):
    """A handler's result to record with others in one batch (`job_complete_many`).

    `finished_at` is None except under a frozen clock (tests), where it is the frozen time when
    the handler returned; otherwise the database stamps the time the batch is written."""

    fence: Fence
    result_json: str
    finished_at: datetime | None = None


class Backend(Protocol):
    """Everything roadie asks of a storage engine. Times come from the database unless frozen."""

    dialect: str
    clock: Clock

    def close(self) -> None: ...
    def migrations(self) -> list[Migration]: ...
    def migration_versions(self) -> set[int]: ...
    def migration_apply(self, migration: Migration) -> bool: ...
    def schema_columns(self) -> dict[str, tuple[str, ...]]: ...

    def job_insert(self, jobs: Sequence[NewJob]) -> list[Job]: ...
    def job_get(self, job_id: int) -> Job | None: ...
    def job_list(self, query: JobQuery) -> list[Job]: ...
    def job_count(self, query: JobQuery) -> int: ...
    def job_list_errors(self, since: datetime, queue: str | None, limit: int) -> list[Job]: ...
    def job_purge(
        self, state: str, finished_before: datetime, queue: str | None, limit: int
    ) -> int: ...
    def job_review_resolve(self, job_id: int, note: str) -> Job | None: ...
    def job_prune_oldest_hour(self, before: datetime) -> datetime | None: ...
    def job_prune_hour(self, hour: datetime) -> None: ...
    def job_prune(self, hour: datetime, limit: int) -> int: ...
    def job_stage(self, limit: int) -> int: ...
    def rollup_totals(self, queue: str | None) -> list[dict[str, Any]]: ...
    def rollup_list(
        self, since: datetime, until: datetime, queue: str | None, task: str | None
    ) -> list[dict[str, Any]]: ...
    def job_claim(
        self, worker_id: str, queue: str, limit: int, lease: float, suspects: int = 1
    ) -> list[Job]: ...
    def job_complete(
        self,
        fence: Fence,
        result_json: str,
        tx: Transaction | None = None,
        children: Sequence[NewJob] = (),
        rules: Rules | None = None,
    ) -> bool: ...
    def job_complete_many(
        self, worker_id: str, done: Sequence[Completion]
    ) -> set[tuple[int, int]]: ...
    def job_retry(
        self, fence: Fence, delay: float, outcome: str, error: str | None, traceback: str | None
    ) -> bool: ...
    def job_fail(
        self, fence: Fence, failure: str, outcome: str, error: str | None, traceback: str | None
    ) -> bool: ...
    def job_progress(self, fence: Fence, progress_json: str) -> bool: ...
    def job_list_timed_out(self) -> list[Job]: ...
    def job_list_children(self, parent_id: int) -> list[Job]: ...
    def job_cancel(self, job_id: int) -> Job | None: ...
    def job_requeue(
        self, job_id: int, allowance: int, args_json: str | None = None
    ) -> Job | None: ...

    def lease_renew(
        self, worker_id: str, fences: Sequence[Fence], lease: float
    ) -> set[tuple[int, int]]: ...
    def lease_reap(self, max_lost: int, dead_before: datetime | None = None) -> list[Job]: ...

    def worker_heartbeat(self, info: WorkerInfo) -> None: ...
    def worker_stop(self, worker_id: str) -> None: ...
    def worker_list(self) -> list[WorkerInfo]: ...
    def worker_prune(self, before: datetime) -> int: ...

    def queue_set_paused(self, name: str, paused: bool, actor: str) -> QueueInfo: ...
    def queue_list(self) -> list[QueueInfo]: ...
    def audit_insert(
        self, actor: str, action: str, params: dict[str, Any], job_ids: list[int], count: int
    ) -> AuditEntry: ...
    def audit_list(
        self, action: str | None, actor: str | None, before_id: int | None, limit: int
    ) -> list[AuditEntry]: ...

    def clock_now(self) -> datetime: ...
    def oldest_snapshot(self) -> dict[str, Any] | None: ...
    def stats_depth(self, queue: str | None) -> list[dict[str, Any]]: ...
    def stats_finished(
        self, since: datetime, queue: str | None, by_queue: bool
    ) -> list[dict[str, Any]]: ...
    def stats_retries(self, since: datetime, queue: str | None) -> dict[str, int]: ...
    def stats_usual_durations(self, since: datetime) -> dict[str, tuple[int, float]]: ...
    def stats_timeline(
        self, since: datetime, until: datetime, width: float, buckets: int, queue: str | None
    ) -> list[dict[str, Any]]: ...

    def transaction_begin(self) -> Transaction: ...
    def wait_for_jobs(self, queues: Sequence[str], timeout: float) -> bool: ...


def row_to_job(
    row: Mapping[str, Any],
    to_time: Callable[[Any], datetime | None],
    from_json: Callable[[Any], Any],
) -> Job:
    """A job row of either dialect as a Job; `to_time` and `from_json` read its timestamps and
    JSON columns (SQLite returns JSON as text, psycopg already decoded).

    It runs for every job claimed or inserted, so the usual empty columns skip the decoders."""

    def decode_args(value: Any) -> Any:
        """Arguments roadie would not have written (text that is not JSON, a lone surrogate, a
        number out of float range, all writable by SQL) are kept as text: the worker fails that
        one job, and listings and the dashboard still show it."""
        if value == "{}" or value == {}:
            return {}
        try:
            args = from_json(value)
            encode_json(args, "arguments")
        except (ValueError, RecursionError):
            return value if isinstance(value, str) else json.dumps(value)
        return args

    attempts = row["attempts"]
    attempts = from_json(attempts) if attempts and attempts != "[]" else []
    for record in attempts:
        for key in ("started_at", "finished_at"):
            record[key] = to_time(record.get(key))
    history = row["args_history"]
    history = from_json(history) if history and history != "[]" else ()
    result, progress = row["result"], row["progress"]
    started_at, finished_at = row["started_at"], row["finished_at"]
    lock_expires_at, reviewed_at = row["lock_expires_at"], row["reviewed_at"]
    return Job.from_all_fields(
        {
            "id": row["id"],
            "queue": row["queue"],
            "task": row["task"],
            "args": decode_args(row["args"]),
            "priority": row["priority"],
            "state": row["state"],
            "attempt": row["attempt"],
            "max_attempts": row["max_attempts"],
            "created_at": to_time(row["created_at"]),
            "run_at": to_time(row["run_at"]),
            "started_at": None if started_at is None else to_time(started_at),
            "finished_at": None if finished_at is None else to_time(finished_at),
            "result": None if result is None else from_json(result),
            "error": row["error"],
            "failure": row["failure"],
            "needs_review": bool(row["needs_review"]),
            "progress": None if progress is None else from_json(progress),
            "parent_id": row["parent_id"],
            "locked_by": row["locked_by"],
            "lock_expires_at": None if lock_expires_at is None else to_time(lock_expires_at),
            "idempotency_key": row["idempotency_key"],
            "timeout": row["timeout"],
            "attempts": attempts,
            "callback_key": row["callback_key"],
            "review_note": row["review_note"],
            "reviewed_at": None if reviewed_at is None else to_time(reviewed_at),
            "args_history": [
                {**record, "replaced_at": to_time(record.get("replaced_at"))} for record in history
            ],
            "stuck": None,
            "children": None,
        }
    )


_JUST_INSERTED = {  # what every job is the moment it is inserted
    **OPTIONAL_FIELDS,
    "state": "pending",
    "attempt": 0,
    "started_at": None,
    "finished_at": None,
    "result": None,
    "error": None,
    "failure": None,
    "progress": None,
    "locked_by": None,
    "lock_expires_at": None,
}


def inserted_job(new: NewJob, job_id: int, created_at: datetime, run_at: datetime) -> Job:
    """The snapshot of a job just inserted, from what was inserted and the few values the
    database chose (its id, created_at and run_at): no row to read back."""
    return Job.from_all_fields(
        {
            **_JUST_INSERTED,
            "attempts": [],
            "args_history": [],
            "id": job_id,
            "queue": new.queue,
            "task": new.task,
            "args": {} if new.args_json == "{}" else json.loads(new.args_json),
            "priority": new.priority,
            "max_attempts": new.max_attempts,
            "created_at": created_at,
            "run_at": run_at,
            "parent_id": new.parent_id,
            "idempotency_key": new.idempotency_key,
            "timeout": new.timeout,
        }
    )


def order_inserted(
    jobs: Sequence[NewJob],
    rows: list[Any],
    to_time: Callable[[Any], Any],
    existing: Callable[[str], Job | None],
) -> list[Job]:
    """The inserted (or, for a taken idempotency key, the existing) job of each input, in order.

    Rows (id, idempotency_key, created_at, run_at) come back in id order, which is input
    order; a job whose key was taken was not inserted, so it is looked up by its key instead.
    """
    rows = sorted(rows, key=lambda row: row["id"])
    keyed = {row["idempotency_key"]: row for row in rows if row["idempotency_key"] is not None}
    unkeyed = iter([row for row in rows if row["idempotency_key"] is None])
    times: dict[Any, Any] = {}  # a batch shares its created_at (and mostly its run_at)

    def time_of(value: Any) -> Any:
        if value not in times:
            times[value] = to_time(value)
        return times[value]

    def inserted(new: NewJob, row: Mapping[str, Any]) -> Job:
        return inserted_job(new, row["id"], time_of(row["created_at"]), time_of(row["run_at"]))

    by_key: dict[str, Job] = {}
    result = []
    for new in jobs:
        key = new.idempotency_key
        if key is None:
            result.append(inserted(new, next(unkeyed)))
            continue
        if key not in by_key and key in keyed:
            by_key[key] = inserted(new, keyed[key])
        job = by_key.get(key) or existing(key)
        if job is None:
            raise RuntimeError(f"job with idempotency key {new.idempotency_key!r} vanished")
        by_key[new.idempotency_key] = job
        result.append(job)
    return result


def is_bulk(jobs: Sequence[NewJob]) -> bool:
    """A batch worth the dialect's bulk insert: big enough to repay its extra round trip
    (PostgreSQL) and without idempotency keys, which only the one-statement insert resolves."""
    return len(jobs) >= BULK_INSERT_MIN and all(job.idempotency_key is None for job in jobs)


def job_values(job: NewJob, encode_time: Callable[[datetime], Any]) -> dict[str, Any]:
    """What `job_insert_one` binds for a job (and `job_insert` reads from each array element);
    `encode_time` writes an absolute run_at."""
    return {
        "queue": job.queue,
        "task": job.task,
        "args": job.args_json,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "delay": job.delay,
        "run_at": encode_time(job.run_at) if job.run_at else None,
        "idempotency_key": job.idempotency_key,
        "timeout": job.timeout,
        "parent_id": job.parent_id,
    }


def encode_batch(jobs: Sequence[NewJob], encode_time: Callable[[datetime], Any]) -> str:
    """New jobs as the JSON array `job_insert` reads."""
    return json.dumps([job_values(job, encode_time) for job in jobs])


Runner = Callable[..., Any]  # run(name, **params) -> a DB-API cursor


def _count_open(run: Runner, parent_id: int) -> int:
    return int(run("job_count_open", parent_id=parent_id).fetchall()[0]["open"])


def _callback_exists(run: Runner, key: str) -> bool:
    return bool(run("job_get_by_callback_key", key=key).fetchall())


def _rules(row: Mapping[str, Any]) -> Rules:
    """A parent's rules, as stored on its row when it started waiting."""
    return Rules(
        row["on_child_complete"], row["on_complete"], row["on_child_failure"] or "continue"
    )


class SQLBackend:
    """The operations both dialects share, each one named statement from `queries/`.

    A dialect supplies its statements and how to run them: `_reading()` and `_writing()` yield a
    `run(name, **params)` that executes one statement (on SQLite, `_writing()` is a `BEGIN
    IMMEDIATE` transaction on the writer connection), `_now()` the frozen time in its own form,
    and its readers of timestamps and JSON.
    """

    clock: Any

    def _reading(self) -> AbstractContextManager[Runner]:
        raise NotImplementedError

    def _writing(self) -> AbstractContextManager[Runner]:
        raise NotImplementedError

    def _insert_bulk(self, jobs: Sequence[NewJob]) -> list[Job]:
        """Insert a big batch without idempotency keys, all or nothing, in input order: the
        dialect's fastest way (`enqueue_many`)."""
        raise NotImplementedError

    def _atomic(self) -> AbstractContextManager[Runner]:
        """Like `_writing()`, with every statement in one transaction."""
        raise NotImplementedError

    def _tx_runner(self, tx: Transaction) -> Runner:
        return lambda name, **params: self._run_in(tx, name, self._params(params))

    def _run_in(self, tx: Transaction, name: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _now(self) -> Any:
        raise NotImplementedError

    def _to_time(self, value: Any) -> datetime | None:
        raise NotImplementedError

    def _job(self, row: Any) -> Job:
        return row_to_job(row, self._to_time, self._from_json)

    def _completion_batch(self, items: list[tuple[int, int, str, Any, float]]) -> dict[str, Any]:
        """job_complete_many's parameters from (id, attempt, result, finished_at, held) items:
        a JSON array of them here; a dialect may take them in another form."""
        return {"batch": json.dumps(items, ensure_ascii=False)}

    def _id_list(self, ids: list[int]) -> Any:
        return ids

    def _encode_time(self, value: datetime) -> Any:
        raise NotImplementedError

    def _from_json(self, value: Any) -> Any:
        return value

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"now": self._now(), **params}

    def _read(self, name: str, **params: Any) -> list[Any]:
        with self._reading() as run:
            return run(name, **params).fetchall()

    def _write(self, name: str, **params: Any) -> list[Any]:
        with self._writing() as run:
            cursor = run(name, **params)
            return cursor.fetchall() if cursor.description else []

    def _changed(self, name: str, **params: Any) -> bool:
        """Run a fenced write; True if it matched its one row."""
        with self._writing() as run:
            return run(name, **params).rowcount == 1

    # -- jobs --------------------------------------------------------------------------------

    def job_insert(self, jobs: Sequence[NewJob]) -> list[Job]:
        if is_bulk(jobs):
            return self._insert_bulk(jobs)
        with self._writing() as run:
            if len(jobs) == 1:  # enqueue: bound values, no batch to build and take apart
                rows = run("job_insert_one", **job_values(jobs[0], self._encode_time)).fetchall()
            else:
                rows = run("job_insert", jobs=encode_batch(jobs, self._encode_time)).fetchall()

            def existing(key: str) -> Job | None:
                found = run("job_get_by_idempotency_key", key=key).fetchall()
                return self._job(found[0]) if found else None

            return order_inserted(jobs, rows, self._to_time, existing)

    def job_get(self, job_id: int) -> Job | None:
        rows = self._read("job_get", id=job_id)
        return self._job(rows[0]) if rows else None

    def job_list(self, query: JobQuery) -> list[Job]:
        return [self._job(row) for row in self._read("job_list", **self._filters(query))]

    def job_count(self, query: JobQuery) -> int:
        params = self._filters(query)
        del params["limit"]
        return int(self._read("job_count", **params)[0]["jobs"])

    def _filters(self, query: JobQuery) -> dict[str, Any]:
        def time(value: datetime | None) -> Any:
            return None if value is None else self._encode_time(value)

        return {
            "state": query.state,
            "queue": query.queue,
            "task": query.task,
            "parent_id": query.parent_id,
            "since": time(query.since),
            "until": time(query.until),
            "finished_before": time(query.finished_before),
            "error": query.error,
            "needs_review": query.needs_review,
            "before_id": query.before_id,
            "limit": query.limit,
        }

    def job_list_errors(self, since: datetime, queue: str | None, limit: int) -> list[Job]:
        rows = self._read(
            "job_list_errors", since=self._encode_time(since), queue=queue, limit=limit
        )
        return [self._job(row) for row in rows]

    def job_purge(
        self, state: str, finished_before: datetime, queue: str | None, limit: int
    ) -> int:
        """Delete one batch of ended jobs; returns how many (fewer than `limit`: none left)."""
        with self._writing() as run:
            cursor = run(
                "job_purge",
                state=state,
                finished_before=self._encode_time(finished_before),
                queue=queue,
                limit=limit,
            )
            return int(cursor.rowcount)

    def job_prune_oldest_hour(self, before: datetime) -> datetime | None:
        """The start of the oldest hour with a job the pruner may delete that ended before
        `before`; None when there is none."""
        rows = self._read("job_prune_oldest_hour", before=self._encode_time(before))
        return self._to_time(rows[0]["hour"]) if rows else None

    def job_prune_hour(self, hour: datetime) -> None:
        """Start the hour's rollups (percentiles of its prunable jobs) unless already started;
        the percentiles are read first, so the write is short. Once started, the hour is not
        read again: later batches only add counts (`rollup_add`)."""
        if self.rollup_list(hour, hour + timedelta(hours=1), None, None):
            return
        encoded = self._encode_time(hour)
        groups = [
            {key: row[key] for key in ("queue", "task", "outcome", *PERCENTILES)}
            for row in self._read("rollup_hour", hour=encoded)
        ]
        if groups:
            with self._writing() as run:
                run("rollup_start", hour=encoded, groups=json.dumps(groups))

    def job_stage(self, limit: int) -> int:
        """Move up to `limit` scheduled jobs that came due back into the claim's index."""
        with self._writing() as run:
            return int(run("job_stage", limit=limit).rowcount)

    def job_prune(self, hour: datetime, limit: int) -> int:
        """Delete up to `limit` prunable jobs of the hour from `hour`, adding them to its rollups
        in the same transaction; returns how many (fewer than `limit`: the hour is done)."""
        encoded = self._encode_time(hour)
        with self._atomic() as run:
            ids = [row["id"] for row in run("job_prune_pick", hour=encoded, limit=limit)]
            if not ids:
                return 0
            run("rollup_add", hour=encoded, ids=self._id_list(ids))
            return int(run("job_prune_delete", ids=self._id_list(ids)).rowcount)

    def rollup_totals(self, queue: str | None) -> list[dict[str, Any]]:
        """Per queue and outcome: {queue, outcome, jobs, retries} of the jobs pruned so far."""
        return [
            {
                "queue": row["queue"],
                "outcome": row["outcome"],
                "jobs": int(row["jobs"]),
                "retries": int(row["retries"]),
            }
            for row in self._read("rollup_totals", queue=queue)
        ]

    def oldest_snapshot(self) -> dict[str, Any] | None:
        """The transaction holding a snapshot longest (seconds, pid, application_name, state),
        or None; always None on SQLite."""
        rows = self._read("oldest_snapshot")
        return (
            {key: rows[0][key] for key in ("seconds", "pid", "application_name", "state")}
            if rows
            else None
        )

    def rollup_list(
        self, since: datetime, until: datetime, queue: str | None, task: str | None
    ) -> list[dict[str, Any]]:
        """The rollups of the hours from `since` up to `until`, oldest first."""
        rows = self._read(
            "rollup_list",
            since=self._encode_time(since),
            until=self._encode_time(until),
            queue=queue,
            task=task,
        )
        return [
            {
                "queue": row["queue"],
                "task": row["task"],
                "hour": self._to_time(row["hour"]),
                "outcome": row["outcome"],
                "jobs": int(row["jobs"]),
                "retries": int(row["retries"]),
                "timed": int(row["timed"]),
                "duration_sum": float(row["duration_sum"]),
                **{key: None if row[key] is None else float(row[key]) for key in PERCENTILES},
            }
            for row in rows
        ]

    def job_review_resolve(self, job_id: int, note: str) -> Job | None:
        rows = self._write("job_review_resolve", id=job_id, note=note)
        return self._job(rows[0]) if rows else None

    def job_claim(
        self, worker_id: str, queue: str, limit: int, lease: float, suspects: int = 1
    ) -> list[Job]:
        """Up to `limit` due jobs, of which at most `suspects` (0 or 1) were running when a
        worker was lost: a job that killed its process must not take others with it again."""
        rows = self._write(
            "job_claim",
            worker_id=worker_id,
            queue=queue,
            limit=limit,
            lease=lease,
            suspects=suspects,
        )
        return sorted((self._job(row) for row in rows), key=lambda j: (-j.priority, j.id))

    def job_complete(
        self,
        fence: Fence,
        result_json: str,
        tx: Transaction | None = None,
        children: Sequence[NewJob] = (),
        rules: Rules | None = None,
    ) -> bool:
        """Record a handler's result, fenced. With `children`, the job waits for them (they are
        inserted in the same transaction); a job in a tree tells its parent, in it too."""
        rules = rules or Rules()
        params = {
            **_fence(fence),
            "result": result_json,
            "state": "waiting" if children else "complete",
            "on_child_complete": rules.on_child_complete if children else None,
            "on_complete": rules.on_complete if children else None,
            "on_child_failure": rules.on_child_failure if children else None,
        }

        def complete(run: Runner) -> bool:
            if run("job_complete", **params).rowcount != 1:
                return False
            job = self._job(run("job_get", id=fence.job_id).fetchall()[0])
            if children:
                spawned = [replace(child, parent_id=job.id) for child in children]
                run("job_insert", jobs=encode_batch(spawned, self._encode_time)).fetchall()
            else:
                self._tell_parent(run, job)
            return True

        if tx is not None:
            return complete(self._tx_runner(tx))
        if not children and fence.parent_id is None:
            return self._changed("job_complete", **params)  # the common case: one statement
        with self._atomic() as run:
            return complete(run)

    def job_complete_many(self, worker_id: str, done: Sequence[Completion]) -> set[tuple[int, int]]:
        """Record the results of many jobs of one worker in one statement, each fenced as in
        `job_complete`; returns the (id, attempt) of those completed (a missing one lost its
        lease). For jobs that spawned no children. Children (and callbacks) tell their parents
        in the same transaction, as `job_complete` does, each parent once per batch when it has
        no per-child callback: so a thousand children ending together cost a few transactions,
        not a thousand turns on the parent's row lock."""
        if not done:
            return set()
        items = []
        for fence, result, finished_at in done:
            if fence.worker_id != worker_id:
                raise ValueError(f"job {fence.job_id} is not held by worker {worker_id}")
            stamp = None if finished_at is None else self._encode_time(finished_at)
            items.append((fence.job_id, fence.attempt, result, stamp, fence.held))
        batch = self._completion_batch(items)
        in_trees = [fence for fence, _, _ in done if fence.parent_id is not None]
        if not in_trees:
            rows = self._write("job_complete_many", worker_id=worker_id, **batch)
            return {(row["id"], row["attempt"]) for row in rows}
        with self._atomic() as run:
            rows = run("job_complete_many", worker_id=worker_id, **batch).fetchall()
            completed = {(row["id"], row["attempt"]) for row in rows}
            ids = [fence.job_id for fence in in_trees if (fence.job_id, fence.attempt) in completed]
            rows = run("job_get_many", ids=self._id_list(ids)).fetchall() if ids else []
            ended = sorted(map(self._job, rows), key=lambda job: (job.parent_id, job.id))
            self._tell_parents(run, ended)
        return completed

    def job_retry(
        self, fence: Fence, delay: float, outcome: str, error: str | None, traceback: str | None
    ) -> bool:
        return self._changed(
            "job_retry",
            **_fence(fence),
            delay=delay,
            outcome=outcome,
            error=error,
            traceback=traceback,
        )

    def job_fail(
        self, fence: Fence, failure: str, outcome: str, error: str | None, traceback: str | None
    ) -> bool:
        params = {
            **_fence(fence),
            "failure": failure,
            "outcome": outcome,
            "error": error,
            "traceback": traceback,
        }
        if fence.parent_id is None:
            return self._changed("job_fail", **params)
        with self._atomic() as run:
            if run("job_fail", **params).rowcount != 1:
                return False
            self._tell_parent(run, self._job(run("job_get", id=fence.job_id).fetchall()[0]))
            return True

    def job_progress(self, fence: Fence, progress_json: str) -> bool:
        return self._changed("job_progress", **_fence(fence), progress=progress_json)

    def job_list_timed_out(self) -> list[Job]:
        return [self._job(row) for row in self._read("job_list_timed_out")]

    # -- leases ------------------------------------------------------------------------------

    def lease_renew(
        self, worker_id: str, fences: Sequence[Fence], lease: float
    ) -> set[tuple[int, int]]:
        if not fences:
            return set()
        ids = self._id_list([fence.job_id for fence in fences])
        rows = self._write("lease_renew", worker_id=worker_id, ids=ids, lease=lease)
        return {(row["id"], row["attempt"]) for row in rows}

    def lease_reap(self, max_lost: int, dead_before: datetime | None = None) -> list[Job]:
        """Return jobs with an expired lease (or, given `dead_before`, held by a worker that
        stopped or was last heard of before it) to the queue; a parent hears of one that failed."""
        dead = None if dead_before is None else self._encode_time(dead_before)
        with self._atomic() as run:
            rows = run("lease_reap", max_lost=max_lost, dead_before=dead).fetchall()
            reaped = [self._job(row) for row in rows]
            for job in reaped:
                if job.state == "failed":
                    self._tell_parent(run, job)
            return reaped

    # -- trees -------------------------------------------------------------------------------

    def job_list_children(self, parent_id: int) -> list[Job]:
        return [self._job(row) for row in self._read("job_list_children", parent_id=parent_id)]

    def job_cancel(self, job_id: int) -> Job | None:
        """Cancel a job that has not ended and what waits under it; its parent hears of it."""
        with self._atomic() as run:
            rows = run("job_cancel", id=job_id).fetchall()
            if not rows:
                return None
            job = self._job(rows[0])
            run("job_cancel_tree", id=job.id).fetchall()
            self._tell_parent(run, job)
            return job

    def job_requeue(self, job_id: int, allowance: int, args_json: str | None = None) -> Job | None:
        """Retry an ended job as a new attempt (with new arguments, if given); parents that
        failed through it wait again."""
        with self._atomic() as run:
            rows = run("job_requeue", id=job_id, allowance=allowance, args=args_json).fetchall()
            if not rows:
                return None
            job = self._job(rows[0])
            parent_id = job.parent_id
            while parent_id is not None:
                reopened = run("job_reopen", id=parent_id).fetchall()
                parent_id = reopened[0]["parent_id"] if reopened else None
            return job

    def _tell_parents(self, run: Runner, ended: list[Job]) -> None:
        """Jobs of a batch completed together (already written, sorted by parent): tell each
        parent once. A parent that hears of each child gets the callbacks of all its children in
        the batch in one insert. If anything else of it ended (callbacks, or children it doesn't
        hear of one by one), its state after the batch is judged once: each would count the same
        open jobs. A count reads every open job under the parent: told one by one, 10,000
        children with a callback each took 58.6 s on PostgreSQL."""
        for parent_id, group in groupby(ended, key=lambda job: job.parent_id):
            jobs = list(group)
            children = [job for job in jobs if job.callback_key is None]
            if children and self._insert_child_callbacks(run, parent_id, children):
                jobs = [job for job in jobs if job.callback_key is not None]
            if jobs:
                self._tell_parent(run, jobs[0])

    def _insert_child_callbacks(self, run: Runner, parent_id: Any, children: list[Job]) -> bool:
        """A callback job for each of `children` if their parent hears of each child (its row
        locked first, as `_tell_parent` does); False if it doesn't, or is gone."""
        rows = run("job_lock", id=parent_id).fetchall()
        if not rows:
            return False
        parent, rules = self._job(rows[0]), _rules(rows[0])
        if not hears_each_child(parent, rules):
            return False
        callbacks = [(child_callback_key(child), {"child_id": child.id}) for child in children]
        self._insert_callbacks(run, parent, rules.on_child_complete, callbacks)
        return True

    def _tell_parent(self, run: Runner, ended: Job) -> None:
        """`ended` reached a terminal state: take its parent's next step, and so on up the tree.

        The parent's row is locked first, so children ending at once take turns.
        """
        while ended.parent_id is not None:
            rows = run("job_lock", id=ended.parent_id).fetchall()
            if not rows:
                return  # the parent was purged: nobody is left to hear of it
            parent, rules = self._job(rows[0]), _rules(rows[0])
            key = complete_callback_key(parent.id)
            step = next_step(
                parent,
                rules,
                ended,
                open_jobs=partial(_count_open, run, parent.id),
                has_complete_callback=partial(_callback_exists, run, key),
            )
            if step.kind == "child_callback":
                callback = (child_callback_key(ended), {"child_id": ended.id})
                self._insert_callbacks(run, parent, rules.on_child_complete, [callback])
                return
            if step.kind == "complete_callback":
                self._insert_callbacks(run, parent, rules.on_complete, [(key, {})])
                return
            if step.kind == "nothing":
                return
            state = "complete" if step.kind == "complete" else "failed"
            rows = run(
                "job_end_waiting", id=parent.id, state=state, failure=step.failure, error=step.error
            ).fetchall()
            if step.kind == "fail" and rules.on_child_failure == "cancel":
                run("job_cancel_tree", id=parent.id).fetchall()
            ended = self._job(rows[0])

    def _insert_callbacks(
        self, run: Runner, parent: Job, task: str | None, callbacks: list[tuple[str, dict]]
    ) -> None:
        """Callback jobs of `task` under `parent`, from (callback_key, arguments) pairs."""
        run(
            "job_insert_callbacks",
            queue=parent.queue,
            task=task,
            callbacks=json.dumps([[key, json.dumps(args)] for key, args in callbacks]),
            priority=parent.priority,
            max_attempts=CALLBACK_MAX_ATTEMPTS,
            parent_id=parent.id,
        )

    # -- workers -----------------------------------------------------------------------------

    def worker_heartbeat(self, info: WorkerInfo) -> None:
        self._write(
            "worker_heartbeat",
            id=info.id,
            host=info.host,
            pid=info.pid,
            queues=json.dumps(info.queues),
            concurrency=info.concurrency,
        )

    def worker_stop(self, worker_id: str) -> None:
        self._write("worker_stop", id=worker_id)

    def worker_list(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                queues=self._from_json(row["queues"]),
                concurrency=row["concurrency"],
                started_at=self._to_time(row["started_at"]),
                heartbeat_at=self._to_time(row["heartbeat_at"]),
                stopped_at=self._to_time(row["stopped_at"]),
                jobs=row["jobs"],
            )
            for row in self._read("worker_list")
        ]

    def worker_prune(self, before: datetime) -> int:
        with self._writing() as run:
            return int(run("worker_prune", before=self._encode_time(before)).rowcount)

    # -- queues and the audit log ------------------------------------------------------------

    def queue_set_paused(self, name: str, paused: bool, actor: str) -> QueueInfo:
        row = self._write("queue_set_paused", queue=name, paused=paused, actor=actor)[0]
        return self._queue(row)

    def queue_list(self) -> list[QueueInfo]:
        return [self._queue(row) for row in self._read("queue_list")]

    def _queue(self, row: Any) -> QueueInfo:
        return QueueInfo(
            name=row["name"],
            paused=bool(row["paused"]),
            changed_at=self._to_time(row["changed_at"]),
            changed_by=row["changed_by"],
        )

    def audit_insert(
        self, actor: str, action: str, params: dict[str, Any], job_ids: list[int], count: int
    ) -> AuditEntry:
        row = self._write(
            "audit_insert",
            actor=actor,
            action=action,
            params=json.dumps(params, default=str),
            job_ids=json.dumps(job_ids),
            count=count,
        )[0]
        return self._audit(row)

    def audit_list(
        self, action: str | None, actor: str | None, before_id: int | None, limit: int
    ) -> list[AuditEntry]:
        rows = self._read(
            "audit_list", action=action, actor=actor, before_id=before_id, limit=limit
        )
        return [self._audit(row) for row in rows]

    def _audit(self, row: Any) -> AuditEntry:
        return AuditEntry(
            id=row["id"],
            at=self._to_time(row["at"]),  # type: ignore[arg-type]
            actor=row["actor"],
            action=row["action"],
            params=self._from_json(row["params"]),
            job_ids=self._from_json(row["job_ids"]),
            count=row["count"],
        )

    # -- the clock and statistics ------------------------------------------------------------

    def clock_now(self) -> datetime:
        return self._to_time(self._read("clock_now")[0]["now"])  # type: ignore[return-value]

    def stats_depth(self, queue: str | None) -> list[dict[str, Any]]:
        return [dict(row) for row in self._read("stats_depth", queue=queue)]

    def stats_finished(
        self, since: datetime, queue: str | None, by_queue: bool
    ) -> list[dict[str, Any]]:
        rows = self._read(
            "stats_finished", since=self._encode_time(since), queue=queue, by_queue=by_queue
        )
        return [dict(row) for row in rows]

    def stats_retries(self, since: datetime, queue: str | None) -> dict[str, int]:
        rows = self._read("stats_retries", since=self._encode_time(since), queue=queue)
        return {row["queue"]: int(row["retries"]) for row in rows}

    def stats_usual_durations(self, since: datetime) -> dict[str, tuple[int, float]]:
        """Per task with a running job: (samples, p95 seconds) of its recent completions."""
        rows = self._read("stats_usual_durations", since=self._encode_time(since))
        return {row["task"]: (int(row["samples"]), float(row["p95"])) for row in rows}

    def stats_timeline(
        self, since: datetime, until: datetime, width: float, buckets: int, queue: str | None
    ) -> list[dict[str, Any]]:
        """Per queue and bucket of `width` seconds from `since` (`buckets` of them, the last
        holding `until`): {queue, bucket, created, finished, failed}; empty buckets are absent."""
        rows = self._read(
            "stats_timeline",
            since=self._encode_time(since),
            until=self._encode_time(until),
            width=width,
            buckets=buckets,
            queue=queue,
        )
        return [
            {
                "queue": row["queue"],
                "bucket": int(row["bucket"]),
                "created": int(row["created"]),
                "finished": int(row["finished"]),
                "failed": int(row["failed"]),
            }
            for row in rows
        ]


def _fence(fence: Fence) -> dict[str, Any]:
    return {
        "id": fence.job_id,
        "attempt": fence.attempt,
        "worker_id": fence.worker_id,
        "held": fence.held,
    }
