"""roadie enqueue, roadie jobs list|show|retry|cancel|purge, roadie workers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from roadie.admin import Admin
from roadie.cli.common import (
    app_options,
    console,
    load_app,
    parse_json_object,
    print_json,
    when,
)
from roadie.config import parse_duration
from roadie.errors import InvalidInput
from roadie.jobs import RUNNING, STATES, Job
from roadie.report import action_report, after_attempt, holder, lock_age, run_time, span, timing

TREE_WIDTH = 50
TREE_DEPTH = 4
IDS_SHOWN = 20  # ids printed in one line of a mass action's report
BAR_WIDTH = 10


@click.command("enqueue")
@click.argument("task")
@click.option(
    "--args", "args_json", default="{}", metavar="JSON", help="Keyword arguments as a JSON object."
)
@click.option("--queue", default=None, help="Override the task's queue.")
@click.option("--priority", type=int, default=None, help="Higher runs first.")
@click.option("--delay", default=None, metavar="DURATION", help="Run after e.g. 30s, 15m, 2h.")
@click.option(
    "--idempotency-key", default=None, help="A second enqueue with this key returns the first job."
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@app_options
def enqueue_command(
    task: str,
    args_json: str,
    queue: str | None,
    priority: int | None,
    delay: str | None,
    idempotency_key: str | None,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Enqueue a job of TASK (the app is loaded; unknown tasks are refused)."""
    args = parse_json_object(args_json, "--args")
    with load_app(app_spec, database_url, required=True) as app:
        job = app.enqueue(
            task, args, queue=queue, priority=priority, delay=delay, idempotency_key=idempotency_key
        )
    if as_json:
        print_json(job.to_dict())
    else:
        click.echo(f"enqueued job {job.id} ({job.task} on {job.queue}, {job.state})")
    return 0


@click.group("jobs")
def jobs_group() -> None:
    """See jobs and act on them: list, show, retry, cancel, purge."""


# -- jobs list ---------------------------------------------------------------------------------


@jobs_group.command("list")
@click.option("--state", type=click.Choice(STATES), default=None)
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option("--parent", "parent_id", type=int, default=None, metavar="ID", help="Children of ID.")
@click.option(
    "--since", default=None, metavar="WHEN", help="Created at or after: ISO 8601 or e.g. 1h (ago)."
)
@click.option(
    "--until", default=None, metavar="WHEN", help="Created before: ISO 8601 or e.g. 30m (ago)."
)
@click.option("--error", default=None, metavar="TEXT", help="Text in the last error, any case.")
@click.option("--review", is_flag=True, help="Only failed jobs awaiting review.")
@click.option("--before", "before_id", type=int, default=None, metavar="ID", help="Next page.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most 10,000.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of jobs.")
@app_options
def list_command(
    state: str | None,
    queue: str | None,
    task: str | None,
    parent_id: int | None,
    since: str | None,
    until: str | None,
    error: str | None,
    review: bool,
    before_id: int | None,
    limit: int,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """List jobs, newest first.

    With --state running: each job's worker, lock age, progress, run time and whether it looks
    stuck."""
    with load_app(app_spec, database_url) as app:
        admin = app.admin
        jobs = admin.list_jobs(
            state=state, queue=queue, task=task, limit=limit, parent_id=parent_id,
            since=since, until=until, error=error, needs_review=True if review else None,
            before_id=before_id,
        )  # fmt: skip
        now = admin.now()
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return 0
    table = running_table(jobs, now) if state == RUNNING else jobs_table(jobs, now)
    out = console()
    out.print(table)
    out.print(count(len(jobs), "job"))
    page_hint(jobs, limit)
    return 0


def jobs_table(jobs: Sequence[Job], now: datetime) -> Table:
    table = Table(
        "id", "queue", "task", "state", "attempt", "priority", "created", "run time", "error"
    )
    for job in jobs:
        table.add_row(
            str(job.id), job.queue, job.task, state_text(job), f"{job.attempt}/{job.max_attempts}",
            str(job.priority), when(job.created_at), span(run_time(job, now)),
            (job.error or "")[:60],
        )  # fmt: skip
    return table


def running_table(jobs: Sequence[Job], now: datetime) -> Table:
    """Running jobs: who holds each, since when, how far it got, and whether it looks stuck."""
    table = Table(
        "id", "queue", "task", "worker", "attempt", "lock age", "progress", "run time", "stuck"
    )
    for job in jobs:
        table.add_row(
            str(job.id), job.queue, job.task, job.locked_by or "-",
            f"{job.attempt}/{job.max_attempts}", span(lock_age(job, now)),
            progress_bar(job), span(run_time(job, now)), f"STUCK: {job.stuck}" if job.stuck else "",
        )  # fmt: skip
    return table


def page_hint(items: Sequence[Any], limit: int) -> None:
    """A full page may have a next one: say how to ask for it."""
    if items and len(items) >= limit:
        click.echo(f"next page: --before {items[-1].id}")


# -- jobs show ---------------------------------------------------------------------------------


@jobs_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the job with its attempts as JSON.")
@app_options
def show_command(job_id: int, as_json: bool, app_spec: str | None, database_url: str | None) -> int:
    """Show one job in full.

    Arguments (and earlier ones), result, progress, timing, lock, review, every attempt with its
    error, and the children tree."""
    with load_app(app_spec, database_url) as app:
        job = app.admin.get_job(job_id)
        now = app.admin.now()
        tree = child_tree(app.admin, job) if job.children and not as_json else None
    if as_json:
        print_json({**job.to_dict(), "timing": timing(job, now)})
        return 0
    out = console()
    out.print(f"job {job.id}  {job.task}  ({job.state})", style="bold")
    times = timing(job, now)
    # A pending job that ran before still carries its last attempt's start, run time and error:
    # labelled as the last attempt's, as the dashboard does.
    last = after_attempt(job)
    rows = [
        ("queue", job.queue),
        ("priority", str(job.priority)),
        ("args", json.dumps(job.args, ensure_ascii=False)),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("created", when(job.created_at)),
        ("run at", when(job.run_at)),
        ("last attempt started" if last else "started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("last attempt ran" if last else "run time", span(times["run_time"])),
        ("waited", span(times["waited"])),
        ("result", json.dumps(job.result, ensure_ascii=False) if job.result is not None else "-"),
        ("last error" if last else "error", job.error or "-"),
        ("failure", job.failure or "-"),
        ("progress", progress_text(job)),
        ("lock", lock_text(job, now)),
        ("stuck", job.stuck or "-"),
        ("review", review_text(job)),
        ("idempotency key", job.idempotency_key or "-"),
        ("parent", str(job.parent_id) if job.parent_id else "-"),
    ]
    width = max(len(name) for name, _ in rows) + 1
    for name, value in rows:
        out.print(f"  {name:<{width}}{value}")
    if job.args_history:
        table = Table("attempt", "replaced", "arguments", title="earlier arguments")
        for record in job.args_history:
            table.add_row(
                str(record.get("attempt")), when(record.get("replaced_at")),
                json.dumps(record.get("args"), ensure_ascii=False),
            )  # fmt: skip
        out.print(table)
    if job.attempts:
        table = Table(
            "#", "worker", "started", "finished", "took", "outcome", "error", title="attempts"
        )
        for record in job.attempts:
            took = (
                (record["finished_at"] - record["started_at"]).total_seconds()
                if record.get("finished_at") and record.get("started_at")
                else None
            )
            table.add_row(
                str(record["attempt"]), str(record["worker"]), when(record["started_at"]),
                when(record["finished_at"]), span(took), record["outcome"],
                (record.get("error") or "")[:80],
            )  # fmt: skip
        out.print(table)
        last_traceback = next(
            (r["traceback"] for r in reversed(job.attempts) if r.get("traceback")), None
        )
        if last_traceback:
            out.print("last traceback:")
            out.print(last_traceback.rstrip())
    if tree is not None:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(job.child_counts.items()))
        out.print(f"children: {counts}")
        out.print(tree)
    return 0


def child_tree(admin: Admin, job: Job, depth: int = 0) -> Tree:
    """The job's children, and theirs, as a tree (the first TREE_WIDTH of each, TREE_DEPTH deep)."""
    tree = Tree(Text(f"{job.id} {job.task} ({job.state})"))
    children = job.children or []
    for child in children[:TREE_WIDTH]:
        label = f"{child.id} {child.task} ({child.state})" + (
            f" {child.error}" if child.error else ""
        )
        if depth + 1 < TREE_DEPTH and child.state in ("waiting", "complete", "failed"):
            subtree = child_tree(admin, admin.get_job(child.id), depth + 1)
            if subtree.children:
                subtree.label = Text(label)
                tree.children.append(subtree)
                continue
        tree.add(Text(label))
    if len(children) > TREE_WIDTH:
        tree.add(Text(f"... {len(children) - TREE_WIDTH} more"))
    return tree


# -- intervening -------------------------------------------------------------------------------


@jobs_group.command("retry")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--failed", is_flag=True, help="Retry every failed job (of --queue, of --task).")
@click.option("--queue", default=None, help="With --failed: only this queue.")
@click.option("--task", default=None, help="With --failed: only this task.")
@click.option(
    "--args", "args_json", default=None, metavar="JSON", help="New arguments (old ones are kept)."
)
@click.option("--dry-run", is_flag=True, help="Say what would be retried; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@app_options
def retry_command(
    job_ids: tuple[int, ...],
    failed: bool,
    queue: str | None,
    task: str | None,
    args_json: str | None,
    dry_run: bool,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Retry failed or cancelled jobs.

    Each starts a new attempt with a fresh allowance of its task's max_attempts; a parent that
    failed through one waits for it again."""
    if job_ids and failed:
        raise InvalidInput("give job ids or --failed, not both")
    if not job_ids and not failed:
        raise InvalidInput("give the ids of the jobs to retry, or --failed")
    if job_ids and (queue is not None or task is not None):
        raise InvalidInput("--queue and --task go with --failed, not with job ids")
    if failed and args_json is not None:
        raise InvalidInput("--args goes with job ids, not with --failed")
    args = parse_json_object(args_json, "--args") if args_json is not None else None
    with load_app(app_spec, database_url) as app:
        if failed:
            retried = app.admin.retry_failed(queue, task, dry_run=dry_run)
        else:
            retried = app.admin.retry(job_ids, args=args, dry_run=dry_run)
    report("retry", retried, dry_run, as_json, given=job_ids, skipped_why="not failed or cancelled")
    return 0


@jobs_group.command("cancel")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Say what would be cancelled; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@app_options
def cancel_command(
    job_ids: tuple[int, ...],
    dry_run: bool,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Cancel jobs that have not ended.

    The jobs waiting under them are cancelled too; a running job's worker has its result
    refused."""
    with load_app(app_spec, database_url) as app:
        cancelled = app.admin.cancel(job_ids, dry_run=dry_run)
    report("cancel", cancelled, dry_run, as_json, given=job_ids, skipped_why="already ended")
    return 0


@jobs_group.command("purge")
@click.option("--state", required=True, metavar="STATE", help="complete, failed or cancelled.")
@click.option(
    "--older-than", required=True, metavar="DURATION", help="Finished more than this ago, e.g. 7d."
)
@click.option("--queue", default=None, help="Only this queue.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@app_options
def purge_command(
    state: str,
    older_than: str,
    queue: str | None,
    dry_run: bool,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Delete ended jobs that finished long ago.

    Deletes jobs in --state (complete, failed or cancelled) whose finished_at is more than
    --older-than ago."""
    with load_app(app_spec, database_url) as app:
        purged = app.admin.purge(state, older_than, queue, dry_run=dry_run)
    if as_json:
        print_json(
            {"action": "purge", "dry_run": dry_run, "count": purged, "state": state,
             "older_than": parse_duration(older_than, "--older-than"), "queue": queue}
        )  # fmt: skip
    else:
        verb = "would purge" if dry_run else "purged"
        where = f" of queue {queue}" if queue else ""
        click.echo(f"{verb} {count(purged, f'{state} job')}{where} finished over {older_than} ago")
    return 0


# -- reports of mass actions -------------------------------------------------------------------

PAST = {
    "retry": "retried",
    "cancel": "cancelled",
    "expire": "expired",
    "release": "released",
    "resolve": "resolved",
}


def report(
    action: str,
    jobs: Sequence[Job],
    dry_run: bool,
    as_json: bool,
    *,
    given: Sequence[int] = (),
    skipped_why: str = "",
    detail: bool = False,
    note: str = "",
) -> None:
    """What a mass action touched: how many, which (and, for actions on given ids, which of
    those were left alone). `detail` lists each job with its task and worker."""
    touched = {job.id for job in jobs}
    skipped = list(dict.fromkeys(job_id for job_id in given if job_id not in touched))
    if as_json:
        print_json(action_report(action, jobs, dry_run, given))
        return
    verb = f"would {action}" if dry_run else PAST[action]
    head = f"{verb} {count(len(jobs), 'job')}" + (f" {note}" if note else "")
    if detail:
        click.echo(head + (":" if jobs else ""))
        for job in jobs:
            click.echo(f"  {job.id}  {job.task}  {job.queue}  worker {holder(job) or '-'}")
    else:
        click.echo(head + (f": {id_list([job.id for job in jobs])}" if jobs else ""))
    if skipped:
        click.echo(f"left {count(len(skipped), 'job')} {skipped_why}: {id_list(skipped)}")


def id_list(ids: Sequence[int]) -> str:
    shown = ", ".join(str(job_id) for job_id in ids[:IDS_SHOWN])
    return shown + (f" and {len(ids) - IDS_SHOWN} more" if len(ids) > IDS_SHOWN else "")


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# -- workers -----------------------------------------------------------------------------------


@click.command("workers")
@click.option(
    "--dead-after",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="A worker silent this long is shown dead.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of workers.")
@app_options
def workers_command(
    dead_after: str, as_json: bool, app_spec: str | None, database_url: str | None
) -> int:
    """List registered workers: alive, dead (silent for --dead-after) or stopped, and their jobs."""
    with load_app(app_spec, database_url) as app:
        workers = app.admin.workers(dead_after=dead_after)
        now = app.admin.now()
    if as_json:
        print_json([worker.to_dict() for worker in workers])
        return 0
    table = Table("id", "host", "pid", "queues", "concurrency", "jobs", "last heartbeat", "state")
    for w in workers:
        heard = (now - w.heartbeat_at).total_seconds() if w.heartbeat_at else None
        table.add_row(
            w.id, w.host, str(w.pid), ",".join(w.queues), str(w.concurrency), str(w.jobs),
            f"{when(w.heartbeat_at)} ({span(max(heard, 0.0))} ago)" if heard is not None else "-",
            w.state or "-",
        )  # fmt: skip
    console().print(table)
    return 0


# -- what a job's figures read as --------------------------------------------------------------


def state_text(job: Job) -> str:
    if job.stuck:
        return f"{job.state} (stuck: {job.stuck})"
    return job.state


def progress_text(job: Job) -> str:
    if not job.progress:
        return "-"
    message = job.progress.get("message")
    return f"{job.progress.get('fraction', 0) * 100:.0f}%" + (f" {message}" if message else "")


def progress_bar(job: Job) -> str:
    if not job.progress:
        return "-"
    fraction = min(max(float(job.progress.get("fraction") or 0.0), 0.0), 1.0)
    filled = round(fraction * BAR_WIDTH)
    bar = "█" * filled + "░" * (BAR_WIDTH - filled)
    message = job.progress.get("message")
    return f"{bar} {fraction * 100:.0f}%" + (f" {message}" if message else "")


def lock_text(job: Job, now: datetime | None = None) -> str:
    if not job.locked_by:
        return "-"
    text = f"held by {job.locked_by}"
    if now is not None and (age := lock_age(job, now)) is not None:
        text += f" for {span(age)}"
    if job.lock_expires_at is not None:
        text += f", expires {when(job.lock_expires_at)}"
        if now is not None:
            left = (job.lock_expires_at - now).total_seconds()
            text += f" (in {span(left)})" if left >= 0 else f" ({span(-left)} ago)"
    return text


def review_text(job: Job) -> str:
    if job.needs_review:
        return "awaiting review"
    if job.reviewed_at is not None:
        return f"resolved {when(job.reviewed_at)}: {job.review_note or ''}"
    return "-"
