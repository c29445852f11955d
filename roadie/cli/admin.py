"""roadie admin expire-stuck|clear-locks, roadie queues [pause|resume], roadie review, roadie audit."""

from __future__ import annotations

import json

import click
from rich.table import Table

from roadie.admin import DEFAULT_DEAD_AFTER
from roadie.cli.common import app_options, console, load_app, print_json, when
from roadie.cli.jobs import count, id_list, page_hint, report
from roadie.jobs import STATES


@click.group("admin")
def admin_group() -> None:
    """Force stuck jobs out of running; release locks of dead workers."""


@admin_group.command("expire-stuck")
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    help="Running for longer than this, e.g. 15m.",
)
@click.option("--queue", default=None, help="Only this queue.")
@click.option("--fail", is_flag=True, help="Fail them (failure 'expired') instead of retrying.")
@click.option("--dry-run", is_flag=True, help="Say which jobs would be expired; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@app_options
def expire_stuck_command(
    older_than: str,
    queue: str | None,
    fail: bool,
    dry_run: bool,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Force jobs running too long out of running.

    Each job running for longer than --older-than is retried as a new attempt (or failed with
    --fail); the worker that still holds one has its result refused."""
    with load_app(app_spec, database_url) as app:
        expired = app.admin.expire_stuck(older_than, queue, fail=fail, dry_run=dry_run)
    then = "failed" if fail else "retried"
    report(
        "expire", expired, dry_run, as_json, detail=True, note=f"running over {older_than} ({then})"
    )
    return 0


@admin_group.command("clear-locks")
@click.option(
    "--dead-for",
    default=f"{DEFAULT_DEAD_AFTER:g}s",
    show_default=True,
    metavar="DURATION",
    help="Release locks of workers silent for this long (and locks whose lease ran out).",
)
@click.option("--dry-run", is_flag=True, help="Say which locks would be released; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@app_options
def clear_locks_command(
    dead_for: str, dry_run: bool, as_json: bool, app_spec: str | None, database_url: str | None
) -> int:
    """Release the locks of dead workers.

    Locks held by workers stopped or silent for --dead-for, or whose lease ran out: each job goes
    back to the queue as a lost attempt (or fails after 3 lost workers)."""
    with load_app(app_spec, database_url) as app:
        released = app.admin.clear_locks(dead_for, dry_run=dry_run)
    report("release", released, dry_run, as_json, detail=True, note="from dead workers' locks")
    return 0


# -- queues ------------------------------------------------------------------------------------


@click.group("queues", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of queues.")
@app_options
@click.pass_context
def queues_command(
    ctx: click.Context, as_json: bool, app_spec: str | None, database_url: str | None
) -> int:
    """List queues with their depth per state; pause or resume one."""
    ctx.obj = {"app_spec": app_spec, "database_url": database_url}
    if ctx.invoked_subcommand is not None:
        return 0
    with load_app(app_spec, database_url) as app:
        queues = app.admin.queues()
    if as_json:
        print_json(queues)
        return 0
    table = Table("queue", "paused", *STATES)
    for entry in queues:
        table.add_row(
            entry["queue"],
            "PAUSED" if entry["paused"] else "-",
            *(str(entry["depth"][state]) for state in STATES),
        )
    console().print(table)
    return 0


def _set_paused(
    ctx: click.Context, queue: str, paused: bool, app_spec: str | None, database_url: str | None
) -> int:
    outer = ctx.find_object(dict) or {}
    app_spec = app_spec if app_spec is not None else outer.get("app_spec")
    database_url = database_url if database_url is not None else outer.get("database_url")
    with load_app(app_spec, database_url) as app:
        if paused:
            app.admin.pause(queue)
        else:
            app.admin.resume(queue)
    if paused:
        click.echo(f"paused queue {queue}: workers claim nothing from it (jobs in hand run on)")
    else:
        click.echo(f"resumed queue {queue}")
    return 0


@queues_command.command("pause")
@click.argument("queue")
@app_options
@click.pass_context
def pause_command(
    ctx: click.Context, queue: str, app_spec: str | None, database_url: str | None
) -> int:
    """Stop workers claiming jobs of QUEUE (enqueue still works)."""
    return _set_paused(ctx, queue, True, app_spec, database_url)


@queues_command.command("resume")
@click.argument("queue")
@app_options
@click.pass_context
def resume_command(
    ctx: click.Context, queue: str, app_spec: str | None, database_url: str | None
) -> int:
    """Let workers claim jobs of QUEUE again."""
    return _set_paused(ctx, queue, False, app_spec, database_url)


# -- review ------------------------------------------------------------------------------------


@click.group("review")
def review_group() -> None:
    """Failed jobs awaiting an administrator: list them, resolve them."""


@review_group.command("list")
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option("--limit", type=int, default=100, show_default=True, help="At most 10,000.")
@click.option("--before", "before_id", type=int, default=None, metavar="ID", help="Next page.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of jobs.")
@app_options
def review_list_command(
    queue: str | None,
    task: str | None,
    limit: int,
    before_id: int | None,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Failed jobs not yet dealt with, newest first."""
    with load_app(app_spec, database_url) as app:
        jobs = app.admin.review_list(queue=queue, task=task, limit=limit, before_id=before_id)
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return 0
    table = Table("id", "queue", "task", "failure", "attempt", "finished", "error")
    for job in jobs:
        table.add_row(
            str(job.id), job.queue, job.task, job.failure or "-", str(job.attempt),
            when(job.finished_at), (job.error or "")[:70],
        )  # fmt: skip
    out = console()
    out.print(table)
    out.print(count(len(jobs), "job") + " awaiting review")
    page_hint(jobs, limit)
    return 0


@review_group.command("resolve")
@click.argument("job_ids", type=int, nargs=-1, required=True)
@click.option("--note", required=True, metavar="TEXT", help="What was done about them.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@app_options
def review_resolve_command(
    job_ids: tuple[int, ...],
    note: str,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Acknowledge failed jobs: they stay failed, keep the note and leave the review list."""
    with load_app(app_spec, database_url) as app:
        resolved = app.admin.resolve(job_ids, note)
    report("resolve", resolved, False, as_json, given=job_ids, skipped_why="not awaiting review")
    return 0


# -- the audit log -----------------------------------------------------------------------------


@click.command("audit")
@click.option("--action", default=None, help="Only this action, e.g. jobs.retry.")
@click.option("--actor", default=None, help="Only actions of this user.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most 10,000.")
@click.option("--before", "before_id", type=int, default=None, metavar="ID", help="Next page.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of entries.")
@app_options
def audit_command(
    action: str | None,
    actor: str | None,
    limit: int,
    before_id: int | None,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Who did which administrative action, when, to which jobs; newest first."""
    with load_app(app_spec, database_url) as app:
        entries = app.admin.audit(action=action, actor=actor, limit=limit, before_id=before_id)
    if as_json:
        print_json([entry.to_dict() for entry in entries])
        return 0
    table = Table("id", "at", "actor", "action", "count", "jobs", "parameters")
    for entry in entries:
        table.add_row(
            str(entry.id), when(entry.at), entry.actor, entry.action, str(entry.count),
            id_list(entry.job_ids) or "-", json.dumps(entry.params, ensure_ascii=False),
        )  # fmt: skip
    console().print(table)
    page_hint(entries, limit)
    return 0
