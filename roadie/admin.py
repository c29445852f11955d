"""What administrators ask of roadie; the CLI, the dashboard and the metrics call only this.

Every action that changes jobs or queues is fenced or re-checked row by row, so it is safe while
workers run, and is written to the audit log with who did it. Dry runs change nothing and are not
audited. Ages and "now" come from the database's clock, never from this machine's.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from roadie.backends.base import AuditEntry, Backend, JobQuery, WorkerInfo
from roadie.config import (
    check_int,
    check_queue,
    check_task_name,
    is_storable_id,
    parse_duration,
)
from roadie.errors import InvalidInput, JobNotFound
from roadie.jobs import (
    FAILED,
    MAX_LOST_ATTEMPTS,
    RUNNING,
    STATES,
    TERMINAL_STATES,
    Fence,
    Job,
    encode_args,
    error_signature,
    stuck_reason,
)

MAX_LIST_LIMIT = 10_000
DEFAULT_MAX_ATTEMPTS = 20
DEFAULT_MAX_ARGS_BYTES = 256 * 1024
DEFAULT_DEAD_AFTER = 60.0  # a worker silent this long is dead (clear-locks' default --dead-for)
PURGE_BATCH = 5_000
AUDIT_MAX_IDS = 1_000  # job ids kept on one audit entry; its count is always the full count
USUAL_DURATION_WINDOW = 3600.0  # a task's usual duration is judged on the last hour
FAILURE_SCAN_LIMIT = 10_000  # jobs read to group failures
TIMELINE_MAX_BUCKETS = 1_000
# What the dashboard's overview warns about (see `Admin.alerts`).
ALERT_PENDING_AGE = 300.0  # a due job waiting longer than this: the queue is falling behind
ALERT_GROWTH_MIN = 10  # jobs: a queue "grows" by at least this many over the window
ALERT_GROWTH_SHARE = 0.25  # ... and by at least this share of what it finished
ALERT_SPIKE_WINDOW = 900.0  # failures are judged over the last 15 minutes
ALERT_SPIKE_MIN_FINISHED = 5  # ... with at least this many jobs finished in them
ALERT_SPIKE_RATE = 0.2  # a failure rate this high is a spike whatever came before
ALERT_SPIKE_FACTOR = 3.0  # ... as is one this many times the rest of the window's
ALERT_SPIKE_FLOOR = 0.05  # ... if it is at least this high
ALERT_SNAPSHOT_AGE = 300.0  # a PostgreSQL transaction holding its snapshot longer than this


@dataclass(frozen=True)
class FailureGroup:
    """Failed attempts of one task sharing one error signature."""

    task: str
    signature: str
    attempts: int  # failed attempts in the window
    jobs: int  # distinct jobs among them
    failed_jobs: int  # of those, jobs now failed for good
    first_seen: datetime
    last_seen: datetime
    example_job: int  # the latest job with this failure
    example_error: str

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["first_seen"] = self.first_seen.isoformat()
        data["last_seen"] = self.last_seen.isoformat()
        return data


class Admin:
    def __init__(
        self,
        backend: Backend,
        tasks: Mapping[str, Any] | None = None,
        max_args_bytes: int = DEFAULT_MAX_ARGS_BYTES,
    ) -> None:
        self.backend = backend
        self.tasks = tasks or {}
        self.max_args_bytes = max_args_bytes

    # -- history -----------------------------------------------------------------------------

    def list_jobs(
        self,
        state: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        *,
        parent_id: int | None = None,
        since: Any = None,
        until: Any = None,
        error: str | None = None,
        needs_review: bool | None = None,
        before_id: int | None = None,
    ) -> list[Job]:
        """Jobs matching every filter given, newest first; `before_id` gives the next page.

        `since` and `until` bound the creation time: a datetime, or a duration meaning that long
        ago ("1h"). Running jobs carry `stuck` when they look stuck.
        """
        now = self.backend.clock_now()
        query = JobQuery(
            state=_check_state(state),
            queue=check_queue(queue) if queue is not None else None,
            task=check_task_name(task) if task is not None else None,
            parent_id=_check_id(parent_id, "parent") if parent_id is not None else None,
            since=_moment(since, now, "since"),
            until=_moment(until, now, "until"),
            error=_check_text(error, "error filter"),
            needs_review=needs_review,
            before_id=_check_id(before_id, "before") if before_id is not None else None,
            limit=check_int(limit, "limit", (1, MAX_LIST_LIMIT)),
        )
        return self._mark_stuck(self.backend.job_list(query), now)

    def find_job(self, job_id: int) -> Job | None:
        """The job with its children, or None if no job has that id."""
        job = self.backend.job_get(job_id) if is_storable_id(job_id) else None
        if job is None:
            return None
        job = replace(job, children=self.backend.job_list_children(job.id))
        return self._mark_stuck([job], self.backend.clock_now())[0]

    def get_job(self, job_id: int) -> Job:
        """The job with its children, or JobNotFound ("no job N", an InvalidInput)."""
        job = self.find_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def active_jobs(self, queue: str | None = None, limit: int = 1000) -> list[Job]:
        """Running jobs, oldest first, with `stuck` set on those that look stuck."""
        jobs = self.list_jobs(state=RUNNING, queue=queue, limit=limit)
        return sorted(jobs, key=lambda job: job.started_at or job.created_at)

    def now(self) -> datetime:
        """The database's time: what ages and run times are measured against."""
        return self.backend.clock_now()

    def _mark_stuck(self, jobs: list[Job], now: datetime) -> list[Job]:
        if not any(job.state == RUNNING for job in jobs):
            return jobs
        usual = self.backend.stats_usual_durations(now - timedelta(seconds=USUAL_DURATION_WINDOW))
        return [
            replace(job, stuck=stuck_reason(job, now, usual.get(job.task)))
            if job.state == RUNNING
            else job
            for job in jobs
        ]

    # -- intervening -------------------------------------------------------------------------

    def cancel(
        self, job_ids: Sequence[int], *, dry_run: bool = False, actor: str | None = None
    ) -> list[Job]:
        """Cancel jobs that have not ended, with what waits under them; the ones cancelled
        (with `dry_run`, the ones that would be).

        A running job is cancelled cooperatively: its worker's writes are refused and its
        `ctx.cancelled` turns true at the next heartbeat.
        """
        known = self._known(job_ids)
        if dry_run:
            return [job for job in known if job.state not in TERMINAL_STATES]
        cancelled = [done for job in known if (done := self.backend.job_cancel(job.id))]
        self._audit(actor, "jobs.cancel", {"ids": list(job_ids)}, cancelled)
        return cancelled

    def retry(
        self,
        job_ids: Sequence[int],
        *,
        args: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> list[Job]:
        """Retry failed or cancelled jobs: a new attempt with a fresh allowance of the task's
        max_attempts; a parent that failed through the job waits for it again. New `args`
        replace the old ones, which the job keeps in `args_history`."""
        args_json = encode_args(dict(args), self.max_args_bytes) if args is not None else None
        known = self._known(job_ids)
        return self._requeue(known, args_json, dry_run, actor, {"ids": list(job_ids)}, args)

    def retry_failed(
        self,
        queue: str | None = None,
        task: str | None = None,
        *,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> list[Job]:
        """Retry every failed job (of a queue, of a task), as `retry` does."""
        failed = self._all(JobQuery(state=FAILED, queue=_queue(queue), task=_task(task)))
        params = {"failed": True, "queue": queue, "task": task}
        return self._requeue(failed, None, dry_run, actor, params, None)

    def _requeue(
        self,
        jobs: list[Job],
        args_json: str | None,
        dry_run: bool,
        actor: str | None,
        params: dict[str, Any],
        args: Mapping[str, Any] | None,
    ) -> list[Job]:
        if dry_run:
            return [job for job in jobs if job.state in (FAILED, "cancelled")]
        retried = []
        for job in jobs:
            task = self.tasks.get(job.task)
            allowance = task.max_attempts if task is not None else DEFAULT_MAX_ATTEMPTS
            if (done := self.backend.job_requeue(job.id, allowance, args_json)) is not None:
                retried.append(done)
        if args is not None:
            params = {**params, "args": dict(args)}
        self._audit(actor, "jobs.retry", params, retried)
        return retried

    def purge(
        self,
        state: str,
        older_than: Any,
        queue: str | None = None,
        *,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> int:
        """Delete ended jobs in `state` that finished more than `older_than` ago; how many."""
        if state not in TERMINAL_STATES:
            raise InvalidInput(
                f"cannot purge {state!r} jobs: use one of {', '.join(TERMINAL_STATES)}"
            )
        age = parse_duration(older_than, "--older-than")
        before = self.backend.clock_now() - timedelta(seconds=age)
        queue = _queue(queue)
        if dry_run:
            return self.backend.job_count(
                JobQuery(state=state, queue=queue, finished_before=before)
            )
        purged = 0
        while (batch := self.backend.job_purge(state, before, queue, PURGE_BATCH)) > 0:
            purged += batch
            if batch < PURGE_BATCH:
                break
        params = {"state": state, "older_than": age, "queue": queue}
        self._audit(actor, "jobs.purge", params, [], count=purged)
        return purged

    def expire_stuck(
        self,
        older_than: Any,
        queue: str | None = None,
        *,
        fail: bool = False,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> list[Job]:
        """Force jobs running for longer than `older_than` out of `running`: each is retried as a
        new attempt (or failed as `expired` with `fail`). Fenced on the attempt the listing saw,
        so a job that ended meanwhile is left alone, and the worker that still holds one has its
        late completion refused. Returns the jobs as they were before (with `dry_run`, the ones
        that would be expired)."""
        age = parse_duration(older_than, "--older-than")
        now = self.backend.clock_now()
        stuck = [
            job
            for job in self._all(JobQuery(state=RUNNING, queue=_queue(queue)))
            if job.started_at is not None and (now - job.started_at).total_seconds() > age
        ]
        if dry_run:
            return stuck
        who = self.actor(actor)
        error = f"expired by {who} after running over {older_than}"
        expired = []
        for job in stuck:
            fence = Fence(job.id, job.attempt, job.locked_by or "", job.parent_id)
            if fail:
                done = self.backend.job_fail(fence, "expired", "expired", error, None)
            else:
                done = self.backend.job_retry(fence, 0.0, "expired", error, None)
            if done:
                expired.append(job)
        params = {"older_than": age, "queue": queue, "fail": fail}
        self._audit(who, "admin.expire-stuck", params, expired)
        return expired

    def clear_locks(
        self,
        dead_for: Any = DEFAULT_DEAD_AFTER,
        *,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> list[Job]:
        """Release locks whose holder stopped or has had no heartbeat for `dead_for`, or whose
        lease ran out: each job goes back to the queue as a lost attempt (or fails after 3).
        Returns the jobs released, as they are now."""
        seconds = parse_duration(dead_for, "--dead-for")
        now = self.backend.clock_now()
        dead_before = now - timedelta(seconds=seconds)
        if dry_run:
            dead = {
                worker.id
                for worker in self.backend.worker_list()
                if worker.stopped_at is not None
                or (worker.heartbeat_at is not None and worker.heartbeat_at < dead_before)
            }
            return [
                job
                for job in self._all(JobQuery(state=RUNNING))
                if job.locked_by in dead
                or (job.lock_expires_at is not None and job.lock_expires_at < now)
            ]
        released = self.backend.lease_reap(MAX_LOST_ATTEMPTS, dead_before=dead_before)
        self._audit(actor, "admin.clear-locks", {"dead_for": seconds}, released)
        return released

    def _known(self, job_ids: Sequence[int]) -> list[Job]:
        """The jobs, after refusing (InvalidInput, nothing done) any id that names no job."""
        jobs = []
        for job_id in job_ids:
            job = self.backend.job_get(job_id) if is_storable_id(job_id) else None
            if job is None:
                raise JobNotFound(job_id)
            jobs.append(job)
        return jobs

    def _all(self, query: JobQuery) -> list[Job]:
        """Every job matching `query`, page by page, newest first."""
        jobs: list[Job] = []
        while True:
            page = self.backend.job_list(replace(query, limit=MAX_LIST_LIMIT))
            jobs.extend(page)
            if len(page) < MAX_LIST_LIMIT:
                return jobs
            query = replace(query, before_id=page[-1].id)

    # -- queues ------------------------------------------------------------------------------

    def pause(self, queue: str, *, actor: str | None = None) -> None:
        """Workers claim nothing from a paused queue (jobs in hand run on); enqueue still works."""
        self._set_paused(queue, True, actor)

    def resume(self, queue: str, *, actor: str | None = None) -> None:
        self._set_paused(queue, False, actor)

    def _set_paused(self, queue: str, paused: bool, actor: str | None) -> None:
        name = check_queue(queue)
        who = self.actor(actor)
        self.backend.queue_set_paused(name, paused, who)
        action = "queues.pause" if paused else "queues.resume"
        self._audit(who, action, {"queue": name}, [], count=1)

    def queues(self) -> list[dict[str, Any]]:
        """Every queue that holds jobs, serves a task of the app, or was paused: `{"queue",
        "paused", "depth": {state: n}}`, by name."""
        paused = {info.name: info.paused for info in self.backend.queue_list()}
        depth: dict[str, dict[str, int]] = {}
        for row in self.backend.stats_depth(None):
            depth.setdefault(row["queue"], {})[row["state"]] = int(row["jobs"])
        names = set(depth) | set(paused) | self._task_queues()
        return [
            {
                "queue": name,
                "paused": paused.get(name, False),
                "depth": {state: depth.get(name, {}).get(state, 0) for state in STATES},
            }
            for name in sorted(names)
        ]

    def _task_queues(self) -> set[str]:
        return {task.queue for task in self.tasks.values() if getattr(task, "queue", None)}

    # -- review ------------------------------------------------------------------------------

    def review_list(
        self,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Job]:
        """Failed jobs awaiting an administrator, newest first."""
        return self.list_jobs(
            queue=queue, task=task, limit=limit, needs_review=True, before_id=before_id
        )

    def resolve(self, job_ids: Sequence[int], note: str, *, actor: str | None = None) -> list[Job]:
        """Acknowledge failed jobs: they stay failed and leave the review list, with the note."""
        note = _check_text(note, "note")
        if not note:
            raise InvalidInput("a review needs --note TEXT saying what was done")
        known = self._known(job_ids)
        resolved = [
            done for job in known if (done := self.backend.job_review_resolve(job.id, note))
        ]
        self._audit(actor, "review.resolve", {"ids": list(job_ids), "note": note}, resolved)
        return resolved

    # -- the audit log -----------------------------------------------------------------------

    def audit(
        self,
        action: str | None = None,
        actor: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[AuditEntry]:
        """Administrative actions, newest first."""
        return self.backend.audit_list(
            _check_text(action, "action"),
            _check_text(actor, "actor"),
            _check_id(before_id, "before") if before_id is not None else None,
            check_int(limit, "limit", (1, MAX_LIST_LIMIT)),
        )

    @staticmethod
    def actor(actor: str | None = None) -> str:
        """Who acts: the name given (the dashboard's user), else the OS user."""
        if actor:
            return actor
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"

    def _audit(
        self,
        actor: str | None,
        action: str,
        params: dict[str, Any],
        jobs: Sequence[Job],
        count: int | None = None,
    ) -> None:
        ids = [job.id for job in jobs[:AUDIT_MAX_IDS]]
        self.backend.audit_insert(
            self.actor(actor), action, params, ids, len(jobs) if count is None else count
        )

    # -- workers -----------------------------------------------------------------------------

    def workers(self, dead_after: Any = DEFAULT_DEAD_AFTER) -> list[WorkerInfo]:
        """Registered workers with `state`: alive, dead (silent for `dead_after`) or stopped."""
        silent = timedelta(seconds=parse_duration(dead_after, "dead_after"))
        now = self.backend.clock_now()
        return [
            replace(worker, state=_worker_state(worker, now, silent))
            for worker in self.backend.worker_list()
        ]

    # -- monitoring --------------------------------------------------------------------------

    def history(
        self,
        since: datetime,
        until: datetime | None = None,
        queue: str | None = None,
        task: str | None = None,
    ) -> list[dict[str, Any]]:
        """The hourly rollups the retention pruner kept of the jobs it deleted, for the hours
        from `since` up to `until` (default: now), oldest first: per queue, task, hour and
        outcome, {jobs, retries, timed (jobs that ran), duration_sum, p50, p95, p99}."""
        queue, task = _queue(queue), _task(task)
        end = until if until is not None else self.backend.clock_now()
        return self.backend.rollup_list(since, end, queue, task)

    def stats(self, queue: str | None = None, window: Any = "15m") -> dict[str, Any]:
        """Queue depth per state, and over the last `window`: throughput, duration p50/p95/p99,
        failure rate, retries; with the oldest lock and the oldest due job, the review backlog
        and stuck jobs. Per queue and in `total`, the same shape. See README "roadie stats"."""
        seconds = parse_duration(window, "--window")
        if seconds <= 0:
            raise InvalidInput("--window must be longer than 0s")
        queue = _queue(queue)
        now = self.backend.clock_now()
        since = now - timedelta(seconds=seconds)
        workers = self.workers()
        depth = self.backend.stats_depth(queue)
        finished = {row["queue"]: row for row in self.backend.stats_finished(since, queue, True)}
        total_finished = self.backend.stats_finished(since, queue, False)
        retries = self.backend.stats_retries(since, queue)
        pruned = self.backend.rollup_totals(queue)
        stuck: dict[str, int] = {}
        for job in self.active_jobs(queue, limit=MAX_LIST_LIMIT):
            if job.stuck:
                stuck[job.queue] = stuck.get(job.queue, 0) + 1
        names = {row["queue"] for row in depth} | set(finished) | {r["queue"] for r in pruned}
        names |= {queue} if queue else self._task_queues()
        queues = {
            name: _queue_stats(
                [row for row in depth if row["queue"] == name],
                finished.get(name),
                retries.get(name, 0),
                stuck.get(name, 0),
                seconds,
                [row for row in pruned if row["queue"] == name],
            )
            for name in sorted(names)
        }
        total = _queue_stats(
            depth,
            total_finished[0] if total_finished else None,
            sum(retries.values()),
            sum(stuck.values()),
            seconds,
            pruned,
        )
        states = ("alive", "dead", "stopped")
        return {
            "at": now.isoformat(),
            "window": seconds,
            "queues": queues,
            "total": total,
            "workers": {state: sum(w.state == state for w in workers) for state in states},
        }

    def timeline(
        self, window: Any = "1h", buckets: int = 12, queue: str | None = None
    ) -> dict[str, Any]:
        """The last `window` cut into `buckets` equal intervals, oldest first: per queue, how many
        jobs were created, finished (complete or failed) and failed in each.

        `{"at", "since", "bucket_seconds", "starts": [ISO 8601 per bucket], "queues": {name:
        {"created": [...], "finished": [...], "failed": [...]}}, "total": {...}}`; a queue with
        nothing in the window is absent (unless asked for). Jobs created count those now
        pending, running or ended, not those now waiting on their children.
        """
        seconds = parse_duration(window, "--window")
        if seconds <= 0:
            raise InvalidInput("--window must be longer than 0s")
        count = check_int(buckets, "buckets", (1, TIMELINE_MAX_BUCKETS))
        queue = _queue(queue)
        now = self.backend.clock_now()
        since = now - timedelta(seconds=seconds)
        width = seconds / count
        rows = self.backend.stats_timeline(since, now, width, count, queue)

        def empty() -> dict[str, list[int]]:
            return {key: [0] * count for key in ("created", "finished", "failed")}

        queues: dict[str, dict[str, list[int]]] = {queue: empty()} if queue else {}
        total = empty()
        for row in rows:
            bucket = min(max(row["bucket"], 0), count - 1)
            entry = queues.setdefault(row["queue"], empty())
            for key in ("created", "finished", "failed"):
                entry[key][bucket] += row[key]
                total[key][bucket] += row[key]
        return {
            "at": now.isoformat(),
            "since": since.isoformat(),
            "bucket_seconds": width,
            "starts": [(since + timedelta(seconds=width * i)).isoformat() for i in range(count)],
            "queues": dict(sorted(queues.items())),
            "total": total,
        }

    def alerts(self, timeline: Mapping[str, Any] | None = None) -> list[Alert]:
        """What needs an administrator now, per queue, worst kinds first:

        - backlog: the oldest due pending job has waited over 5 minutes;
        - growing: over the timeline's window (the last hour) at least 10 more jobs arrived than
          finished (and 25 % more), they still sit pending, and the last 15 minutes grew too;
        - failures: over the last 15 minutes, of at least 5 jobs finished, 20 % or more failed,
          or at least 5 % and 3 times the rate of the rest of the window;
        - stuck: running jobs far past their task's usual duration, their timeout or lease;
        - snapshot (PostgreSQL, not per queue): a transaction of any client has held its snapshot
          for over 5 minutes, so dead job rows pile up and claims slow down.

        `timeline` is `self.timeline()`'s answer if the caller already has it.
        """
        # Here, not at the top: roadie.report reads through this module.
        from roadie.report import round_span, span

        now = self.backend.clock_now()
        line = timeline if timeline is not None else self.timeline("1h", 12)
        paused = {info.name for info in self.backend.queue_list() if info.paused}
        pending: dict[str, int] = {}
        waited: dict[str, float] = {}
        for row in self.backend.stats_depth(None):
            if row["state"] == "pending":
                pending[row["queue"]] = int(row["jobs"])
                if row["oldest_pending_age"] is not None:
                    waited[row["queue"]] = float(row["oldest_pending_age"])
        alerts: list[Alert] = []
        for name, age in sorted(waited.items()):
            if age > ALERT_PENDING_AGE:
                note = " (the queue is paused)" if name in paused else ""
                alerts.append(
                    Alert(
                        "backlog",
                        name,
                        f"{name}: the oldest due job has waited {span(age)}; "
                        f"{pending.get(name, 0)} pending{note}",
                    )
                )
        width = float(line["bucket_seconds"])
        recent = max(1, min(round(ALERT_SPIKE_WINDOW / width), len(line["starts"])))
        for name, entry in line["queues"].items():
            created, finished, failed = entry["created"], entry["finished"], entry["failed"]
            grew = sum(created) - sum(finished)
            if (
                grew >= max(ALERT_GROWTH_MIN, ALERT_GROWTH_SHARE * sum(finished))
                and pending.get(name, 0) >= ALERT_GROWTH_MIN
                and sum(created[-recent:]) > sum(finished[-recent:])
            ):
                alerts.append(
                    Alert(
                        "growing",
                        name,
                        f"{name}: {sum(created)} jobs arrived and {sum(finished)} finished in "
                        f"the last {round_span(width * len(created))}; "
                        f"{pending.get(name, 0)} pending",
                    )
                )
            done, bad = sum(finished[-recent:]), sum(failed[-recent:])
            before_done = sum(finished[:-recent])
            before = sum(failed[:-recent]) / before_done if before_done else 0.0
            rate = bad / done if done else 0.0
            if done >= ALERT_SPIKE_MIN_FINISHED and (
                rate >= ALERT_SPIKE_RATE
                or (rate >= ALERT_SPIKE_FLOOR and rate >= ALERT_SPIKE_FACTOR * before)
            ):
                alerts.append(
                    Alert(
                        "failures",
                        name,
                        f"{name}: {bad} of {done} jobs failed in the last "
                        f"{round_span(width * recent)} ({rate:.0%}; {before:.0%} before)",
                    )
                )
        running = self.active_jobs(limit=MAX_LIST_LIMIT)
        usual = self.backend.stats_usual_durations(now - timedelta(seconds=USUAL_DURATION_WINDOW))
        stuck: dict[str, list[Job]] = {}
        for job in running:
            if job.stuck:
                stuck.setdefault(job.queue, []).append(job)
        for name, jobs in sorted(stuck.items()):
            oldest = jobs[0]  # active_jobs lists the longest running first
            ran = (now - oldest.started_at).total_seconds() if oldest.started_at else 0.0
            why = oldest.stuck
            if why == "slow" and oldest.task in usual:
                why = f"its task usually takes {span(usual[oldest.task][1])}"
            alerts.append(
                Alert(
                    "stuck",
                    name,
                    f"{name}: {len(jobs)} running job{'s' if len(jobs) != 1 else ''} look stuck; "
                    f"job {oldest.id} ({oldest.task}) has held its lock for {span(ran)}: {why}",
                    tuple(job.id for job in jobs),
                )
            )
        snapshot = self.backend.oldest_snapshot()
        if snapshot and snapshot["seconds"] > ALERT_SNAPSHOT_AGE:
            who = snapshot["application_name"] or "no application name"
            alerts.append(
                Alert(
                    "snapshot",
                    "",
                    f"a transaction (pid {snapshot['pid']}, {who}, {snapshot['state']}) has held "
                    f"its snapshot for {span(snapshot['seconds'])}: dead job rows cannot be "
                    "removed meanwhile, and claims slow down",
                )
            )
        order = {"stuck": 0, "snapshot": 1, "failures": 2, "backlog": 3, "growing": 4}
        return sorted(alerts, key=lambda alert: (order[alert.kind], alert.queue))

    def failures(
        self, window: Any = "24h", queue: str | None = None, task: str | None = None
    ) -> list[FailureGroup]:
        """Failed attempts of the last `window`, grouped by task and error signature (exception
        type and message with numbers, ids and quoted values masked), most frequent first."""
        seconds = parse_duration(window, "--window")
        since = self.backend.clock_now() - timedelta(seconds=seconds)
        task = _task(task)
        groups: dict[tuple[str, str], dict[str, Any]] = {}

        def count(job: Job, ended: datetime, error: str, for_good: bool) -> None:
            group = groups.setdefault(
                (job.task, error_signature(error)),
                {"attempts": 0, "jobs": set(), "failed": set(), "seen": []},
            )
            group["attempts"] += 1
            group["jobs"].add(job.id)
            if for_good:
                group["failed"].add(job.id)
            group["seen"].append((ended, job.id, error))

        for job in self.backend.job_list_errors(since, _queue(queue), FAILURE_SCAN_LIMIT):
            if task is not None and job.task != task:
                continue
            final_counted = False
            for record in job.attempts:
                ended = record.get("finished_at")
                error = record.get("error")
                if record.get("outcome") in ("complete", "cancelled") or not error or not ended:
                    continue
                final = job.state == FAILED and record.get("attempt") == job.attempt
                final_counted = final_counted or final
                if ended >= since:
                    count(job, ended, error, final)
            # A parent failed through a child or a callback ends with no failed attempt of its
            # own: its end is the failure.
            if (
                job.state == FAILED
                and not final_counted
                and job.error
                and job.finished_at is not None
                and job.finished_at >= since
            ):
                count(job, job.finished_at, job.error, True)
        result = []
        for (task_name, signature), group in groups.items():
            seen = sorted(group["seen"])
            result.append(
                FailureGroup(
                    task=task_name,
                    signature=signature,
                    attempts=group["attempts"],
                    jobs=len(group["jobs"]),
                    failed_jobs=len(group["failed"]),
                    first_seen=seen[0][0],
                    last_seen=seen[-1][0],
                    example_job=seen[-1][1],
                    example_error=seen[-1][2],
                )
            )
        return sorted(result, key=lambda g: (-g.attempts, g.task, g.signature))


@dataclass(frozen=True)
class Alert:
    """Something on a queue an administrator should look at now.

    `kind`: "backlog" (a due job has waited too long), "growing" (more jobs arrive than finish),
    "failures" (the failure rate spikes), "stuck" (running jobs that look stuck: far past their
    task's usual duration, their timeout or their lease) or "snapshot" (a PostgreSQL transaction
    has held its snapshot for minutes; `queue` is empty: it concerns the whole database)."""

    kind: str
    queue: str
    message: str
    job_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "job_ids": list(self.job_ids)}


def _queue_stats(
    depth_rows: list[dict[str, Any]],
    finished: Mapping[str, Any] | None,
    retries: int,
    stuck: int,
    window: float,
    pruned_rows: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One entry of `stats()`: a queue's rows (or every queue's, for the total) as figures.
    `pruned_rows` are the rollups of jobs the pruner deleted: the all-time counters
    (`finished_total`, `retries_total`) count them, so pruning never lowers them."""
    depth = {state: 0 for state in STATES}
    for row in depth_rows:
        depth[row["state"]] += int(row["jobs"])
    finished_total = {state: depth[state] for state in TERMINAL_STATES}
    for row in pruned_rows:
        finished_total[row["outcome"]] = finished_total.get(row["outcome"], 0) + row["jobs"]
    count = int(finished["finished"]) if finished else 0
    failed = int(finished["failed"]) if finished else 0

    def oldest(column: str) -> float | None:
        ages = [float(row[column]) for row in depth_rows if row[column] is not None]
        return max(ages) if ages else None

    def percentile(name: str) -> float | None:
        return float(finished[name]) if finished and finished[name] is not None else None

    return {
        "depth": depth,
        "duration": {name: percentile(name) for name in ("p50", "p95", "p99")},
        "finished": count,
        "failed": failed,
        "throughput": count / window,
        "failure_rate": failed / count if count else None,
        "duration_sum": float(finished["duration_sum"] or 0.0) if finished else 0.0,
        "retries": retries,
        "retries_total": sum(int(row["retries"] or 0) for row in depth_rows)
        + sum(row["retries"] for row in pruned_rows),
        "finished_total": finished_total,
        "oldest_lock_age": oldest("oldest_lock_age"),
        "oldest_pending_age": oldest("oldest_pending_age"),
        "review": sum(int(row["review"] or 0) for row in depth_rows),
        "stuck": stuck,
    }


def _worker_state(worker: WorkerInfo, now: datetime, silent: timedelta) -> str:
    if worker.stopped_at is not None:
        return "stopped"
    if worker.heartbeat_at is not None and now - worker.heartbeat_at < silent:
        return "alive"
    return "dead"


def _check_state(state: str | None) -> str | None:
    if state is not None and state not in STATES:
        raise InvalidInput(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    return state


def _check_id(value: Any, what: str) -> int:
    if not is_storable_id(value) or value < 1:
        raise InvalidInput(f"bad {what} id {value!r}: must be a positive integer")
    return int(value)


def _check_text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 1000 or "\x00" in value:
        raise InvalidInput(f"bad {what}: must be text of at most 1000 characters")
    return value.strip()


def _queue(queue: str | None) -> str | None:
    return check_queue(queue) if queue is not None else None


def _task(task: str | None) -> str | None:
    return check_task_name(task) if task is not None else None


def _moment(value: Any, now: datetime, what: str) -> datetime | None:
    """A point in time: a datetime, an ISO 8601 text, or a duration meaning that long ago."""
    if value is None or isinstance(value, datetime):
        if isinstance(value, datetime) and value.tzinfo is None:
            raise InvalidInput(f"bad --{what}: give a time zone (e.g. 2026-11-28T09:00:00+00:00)")
        return value
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                f"bad --{what} {value!r}: use ISO 8601 (2026-11-28T09:00:00Z) or a duration ago"
            ) from None
        if moment.tzinfo is None:
            raise InvalidInput(f"bad --{what} {value!r}: give a time zone, e.g. Z or +00:00")
        return moment
    return now - timedelta(seconds=parse_duration(value, f"--{what}"))
