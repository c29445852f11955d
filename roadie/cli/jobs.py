"""roadie enqueue, roadie jobs list|show, roadie workers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

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
    seconds,
    when,
)
from roadie.jobs import STATES, Job

TREE_WIDTH = 50
TREE_DEPTH = 4


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
    """See jobs: list them, show one."""


@jobs_group.command("list")
@click.option("--state", type=click.Choice(STATES), default=None)
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option("--limit", type=int, default=100, show_default=True, help="At most 10,000.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of jobs.")
@app_options
def list_command(
    state: str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """List jobs, newest first."""
    with load_app(app_spec, database_url) as app:
        jobs = app.admin.list_jobs(state=state, queue=queue, task=task, limit=limit)
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return 0
    table = Table(
        "id", "queue", "task", "state", "attempt", "priority", "created", "run time", "error"
    )
    for job in jobs:
        table.add_row(
            str(job.id), job.queue, job.task, job.state, f"{job.attempt}/{job.max_attempts}",
            str(job.priority), when(job.created_at), seconds(run_time(job)), (job.error or "")[:60],
        )  # fmt: skip
    console().print(table)
    console().print(f"{len(jobs)} job" + ("" if len(jobs) == 1 else "s"))
    return 0


@jobs_group.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the job with its attempts as JSON.")
@app_options
def show_command(job_id: int, as_json: bool, app_spec: str | None, database_url: str | None) -> int:
    """Show one job: arguments, result, progress, timing, every attempt with its error."""
    with load_app(app_spec, database_url) as app:
        job = app.admin.get_job(job_id)
        tree = child_tree(app.admin, job) if job.children else None
    if as_json:
        print_json(job.to_dict())
        return 0
    out = console()
    out.print(f"job {job.id}  {job.task}  ({job.state})", markup=False, style="bold")
    waited = (job.started_at - job.run_at).total_seconds() if job.started_at else None
    rows = [
        ("queue", job.queue),
        ("priority", str(job.priority)),
        ("args", json.dumps(job.args, ensure_ascii=False)),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("created", when(job.created_at)),
        ("run at", when(job.run_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("run time", seconds(run_time(job))),
        ("waited", seconds(max(waited, 0.0)) if waited is not None else "-"),
        ("result", json.dumps(job.result, ensure_ascii=False) if job.result is not None else "-"),
        ("error", job.error or "-"),
        ("failure", job.failure or "-"),
        ("progress", progress_text(job)),
        ("lock", lock_text(job)),
        ("idempotency key", job.idempotency_key or "-"),
        ("parent", str(job.parent_id) if job.parent_id else "-"),
    ]
    for name, value in rows:
        out.print(f"  {name:<16}{value}", markup=False)
    if job.attempts:
        table = Table("#", "worker", "started", "finished", "outcome", "error", title="attempts")
        for record in job.attempts:
            table.add_row(
                str(record["attempt"]), str(record["worker"]), when(record["started_at"]),
                when(record["finished_at"]), record["outcome"], (record.get("error") or "")[:80],
            )  # fmt: skip
        out.print(table)
        last_traceback = next(
            (r["traceback"] for r in reversed(job.attempts) if r.get("traceback")), None
        )
        if last_traceback:
            out.print("last traceback:", markup=False)
            out.print(last_traceback.rstrip(), markup=False)
    if tree is not None:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(job.child_counts.items()))
        out.print(f"children: {counts}", markup=False)
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


@jobs_group.command("cancel")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@app_options
def cancel_command(job_ids: tuple[int, ...], app_spec: str | None, database_url: str | None) -> int:
    """Cancel jobs that have not ended, with the jobs waiting under them."""
    with load_app(app_spec, database_url) as app:
        cancelled = app.admin.cancel(job_ids)
    click.echo(f"cancelled {len(cancelled)} of {len(job_ids)} jobs")
    return 0


@jobs_group.command("retry")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@app_options
def retry_command(job_ids: tuple[int, ...], app_spec: str | None, database_url: str | None) -> int:
    """Retry failed or cancelled jobs as a new attempt (a failed parent waits for them again)."""
    with load_app(app_spec, database_url) as app:
        retried = app.admin.retry(job_ids)
    click.echo(f"retried {len(retried)} of {len(job_ids)} jobs")
    return 0


@click.command("workers")
@click.option("--json", "as_json", is_flag=True)
@app_options
def workers_command(as_json: bool, app_spec: str | None, database_url: str | None) -> int:
    """List workers that have registered, with their last heartbeat."""
    with load_app(app_spec, database_url) as app:
        workers = app.admin.workers()
    now = datetime.now(UTC)
    if as_json:
        print_json(
            [
                {
                    **w.__dict__,
                    **{
                        k: getattr(w, k).isoformat()
                        for k in ("started_at", "heartbeat_at", "stopped_at")
                        if getattr(w, k)
                    },
                }
                for w in workers
            ]
        )
        return 0
    table = Table("id", "host", "pid", "queues", "concurrency", "last heartbeat", "status")
    for w in workers:
        alive = (
            w.stopped_at is None
            and w.heartbeat_at is not None
            and now - w.heartbeat_at < timedelta(seconds=60)
        )
        status = "stopped" if w.stopped_at else ("alive" if alive else "dead")
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            str(w.concurrency),
            when(w.heartbeat_at),
            status,
        )
    console().print(table)
    return 0


def run_time(job: Job) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or (datetime.now(UTC) if job.state == "running" else None)
    return (end - job.started_at).total_seconds() if end else None


def progress_text(job: Job) -> str:
    if not job.progress:
        return "-"
    message = job.progress.get("message")
    return f"{job.progress.get('fraction', 0) * 100:.0f}%" + (f" {message}" if message else "")


def lock_text(job: Job) -> str:
    if not job.locked_by:
        return "-"
    return f"held by {job.locked_by}, expires {when(job.lock_expires_at)}"
