"""roadie migrate, roadie worker, roadie demo."""

from __future__ import annotations

import logging

import click

from roadie.cli.common import app_options, load_app
from roadie.config import check_queue


@click.command("migrate")
@app_options
def migrate_command(app_spec: str | None, database_url: str | None) -> int:
    """Create or upgrade roadie's tables (idempotent; safe when run concurrently)."""
    with load_app(app_spec, database_url) as app:
        applied = app.migrate()
        where = app.database_url
    if applied:
        click.echo(f"applied migrations {', '.join(f'{v:04d}' for v in applied)} to {where}")
    else:
        click.echo(f"schema up to date at {where}")
    return 0


@click.command("worker")
@click.option(
    "--queues",
    default=None,
    help="Comma-separated queues (default: every queue of the app's tasks).",
)
@click.option("--concurrency", type=click.IntRange(1, 1000), default=4, show_default=True)
@click.option(
    "--prefetch",
    type=click.IntRange(0, 1000),
    default=None,
    help="Jobs claimed ahead of free slots, held under lease until a slot frees "
    "(default: about 50 ms of recent throughput, at most 256; 0 turns it off).",
)
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--burst", is_flag=True, help="Exit once nothing is due and the jobs in hand are done."
)
@click.option(
    "--lease", default=None, metavar="DURATION", help="Lease length (default: the app's, 30s)."
)
@click.option(
    "--grace",
    default="30s",
    show_default=True,
    metavar="DURATION",
    help="Time in-flight jobs get on SIGTERM.",
)
@click.option(
    "--sweep-interval",
    default="5s",
    show_default=True,
    metavar="DURATION",
    help="How often this worker reaps expired leases and expires timed-out jobs.",
)
@click.option(
    "--retention",
    default=None,
    metavar="DURATION",
    help="Prune finished jobs older than this, keeping hourly rollups; 0 keeps them all. "
    "Default: the app's (7d).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@app_options
def worker_command(
    queues: str | None,
    concurrency: int,
    prefetch: int | None,
    processes: int,
    burst: bool,
    lease: str | None,
    grace: str,
    sweep_interval: str,
    retention: str | None,
    log_level: str,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Run jobs of the app's tasks from the given queues."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    queue_list = [check_queue(q.strip()) for q in queues.split(",")] if queues else None
    app = load_app(app_spec, database_url, required=True)
    try:
        return app.run_worker(
            queue_list,
            concurrency=concurrency,
            prefetch=prefetch,
            processes=processes,
            burst=burst,
            lease=lease,
            grace=grace,
            sweep_interval=sweep_interval,
            **({} if retention is None else {"retention": retention}),
        )
    finally:
        app.close()


@click.command("demo")
@click.option(
    "--small", is_flag=True, help="A small day (a few seconds), for tests and quick looks."
)
@click.option(
    "--database-url", default=None, metavar="URL", help="Default: sqlite:///roadie-demo.db"
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the workers (and the dashboard) running after the day, until Ctrl-C.",
)
@click.option(
    "--workdir",
    envvar="ROADIE_DEMO_DIR",
    default=None,
    metavar="DIR",
    help="Where the demo keeps its files: uploads, media, rollups, outbox, search.db, logs "
    "(or ROADIE_DEMO_DIR; default: beside the SQLite file, roadie-demo/; else ./roadie-demo).",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
    help="The dashboard's port, with --keep-running.",
)  # fmt: skip
def demo_command(
    small: bool, database_url: str | None, keep_running: bool, workdir: str | None, port: int
) -> int:
    """Run a day of the content platform on the five queues: live progress, then a summary."""
    from roadie.demo.run import run_demo

    return run_demo(
        database_url, small=small, keep_running=keep_running, workdir=workdir, port=port
    )
