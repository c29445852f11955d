"""What the CLI and the dashboard report, in one shape for both: a job's timing, a mass action's
report, the held locks (the CLI's `--json` and the dashboard's JSON API), and how a length of
time reads for a person. Pure functions of what the admin layer read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from roadie.admin import DEFAULT_DEAD_AFTER, MAX_LIST_LIMIT, Admin
from roadie.jobs import PENDING, RUNNING, Job


def span(seconds: float | None) -> str:
    """A length of time as a person reads it, in two units at most: 250ms, 4.2s, 38s, 3m07s,
    5h02m, 2d04h; "-" for None. Every digit shown is cut down, never rounded up, so 59.9 s
    reads 59s (not 60s) and a countdown never promises more than is left. Less than nothing (a
    moment already past) reads as nothing. The CLI and the dashboard print every duration so."""
    if seconds is None:
        return "-"
    micros = max(round(seconds * 1_000_000), 0)  # whole microseconds, as a timedelta holds them
    if micros < 1_000_000:
        return f"{micros // 1000}ms"
    if micros < 10_000_000:
        tenths = micros // 100_000
        return f"{tenths // 10}.{tenths % 10}s"
    whole = micros // 1_000_000
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def round_span(seconds: float) -> str:
    """A window as it was most likely given, when it is a whole number of one unit (15m, 1h,
    90s, 7d, as `parse_duration` reads them back); else `span`'s reading of it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f}{unit}"
    return span(seconds)


def after_attempt(job: Job) -> bool:
    """Whether the job is pending after an earlier attempt: its start, run time and error are
    that attempt's, and `jobs show` and the dashboard label them as the last attempt's."""
    return job.state == PENDING and job.attempt > 0


def timing(job: Job, now: datetime) -> dict[str, float | None]:
    """`jobs show --json`'s "timing": seconds waited (started - run_at), run time, lock age."""
    waited = None
    if job.started_at is not None and job.state != "pending" and job.started_at >= job.run_at:
        waited = (job.started_at - job.run_at).total_seconds()
    return {"waited": waited, "run_time": run_time(job, now), "lock_age": lock_age(job, now)}


def run_time(job: Job, now: datetime | None = None) -> float | None:
    """How long the job has run (running, against the database's `now`), or how long its last
    attempt ran."""
    if job.state == RUNNING:
        if job.started_at is None or now is None:
            return None
        return max((now - job.started_at).total_seconds(), 0.0)
    last = job.attempts[-1] if job.attempts else None
    if last and last.get("started_at") and last.get("finished_at"):
        return (last["finished_at"] - last["started_at"]).total_seconds()
    return None


def lock_age(job: Job, now: datetime) -> float | None:
    """How long the worker that holds the job has held it."""
    if job.state != RUNNING or not job.locked_by or job.started_at is None:
        return None
    return max((now - job.started_at).total_seconds(), 0.0)


def holder(job: Job) -> str | None:
    """The worker that held the job when the action took it: its lock, or the worker of the
    attempt the action just ended (a lock released, a running job cancelled)."""
    if job.locked_by:
        return job.locked_by
    last = job.attempts[-1] if job.attempts else None
    if last and last.get("attempt") == job.attempt and last.get("outcome") in ("lost", "cancelled"):
        return last.get("worker")
    return None


def job_entry(job: Job) -> dict[str, Any]:
    """One job in a mass action's JSON report."""
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "attempt": job.attempt,
        "worker": holder(job),
    }


def action_report(
    action: str, jobs: Sequence[Job], dry_run: bool, given: Sequence[int] = ()
) -> dict[str, Any]:
    """A mass action's JSON report: how many jobs it touched (or would, `dry_run`), which, and
    which of the `given` ids it left alone."""
    touched = {job.id for job in jobs}
    skipped = list(dict.fromkeys(job_id for job_id in given if job_id not in touched))
    return {
        "action": action,
        "dry_run": dry_run,
        "count": len(jobs),
        "jobs": [job_entry(job) for job in jobs],
        "skipped": skipped,
    }


def locks(admin: Admin, dead_after: Any = DEFAULT_DEAD_AFTER) -> list[dict[str, Any]]:
    """Every running job's lock, oldest first: who holds it, for how long, until when, whether
    the holder is alive (alive, dead, stopped, or unknown: not a registered worker), and
    whether the job looks stuck."""
    jobs = admin.active_jobs(limit=MAX_LIST_LIMIT)
    states = {worker.id: worker.state for worker in admin.workers(dead_after=dead_after)}
    now = admin.now()
    entries = []
    for job in jobs:
        expires = job.lock_expires_at
        entries.append(
            {
                "job_id": job.id,
                "task": job.task,
                "queue": job.queue,
                "attempt": job.attempt,
                "worker": job.locked_by,
                "started_at": job.started_at.isoformat() if job.started_at else None,
                "lock_age": lock_age(job, now),
                "expires_at": expires.isoformat() if expires else None,
                "expires_in": (expires - now).total_seconds() if expires else None,
                "holder": states.get(job.locked_by or "") or "unknown",
                "stuck": job.stuck,
            }
        )
    return entries
