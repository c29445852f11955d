"""The `roadie` command. Bad usage or input: exit 2 with one line on stderr; failure: exit 1."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from roadie.cli.admin import admin_group, audit_command, queues_command, review_group
from roadie.cli.common import cli
from roadie.cli.jobs import enqueue_command, jobs_group, workers_command
from roadie.cli.monitor import metrics_command, stats_command
from roadie.cli.run import demo_command, migrate_command, worker_command
from roadie.cli.top import failures_command, top_command
from roadie.cli.web import dashboard_command
from roadie.errors import DatabaseUnavailable, InvalidInput, RoadieError

for command in (
    migrate_command,
    worker_command,
    enqueue_command,
    jobs_group,
    workers_command,
    admin_group,
    queues_command,
    review_group,
    audit_command,
    stats_command,
    failures_command,
    top_command,
    metrics_command,
    dashboard_command,
    demo_command,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; every error becomes one line on stderr and an exit code."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None, prog_name="roadie", standalone_mode=False
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 2
    except click.UsageError as exc:
        return _error(exc.format_message(), 2)
    except click.exceptions.Abort:
        return _error("aborted", 1)
    except (InvalidInput, click.BadParameter) as exc:
        return _error(str(exc), 2)
    except DatabaseUnavailable as exc:
        return _error(str(exc), 1)
    except RoadieError as exc:
        return _error(str(exc), 1)
    return code if isinstance(code, int) else 0


def _error(message: str, code: int) -> int:
    line = " ".join(str(message).split())
    print(f"roadie: error: {line}", file=sys.stderr)
    return code
