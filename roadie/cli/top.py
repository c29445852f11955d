"""roadie failures, roadie top."""

from __future__ import annotations

import click


@click.command("failures")
def failures_command() -> int:
    """Failed attempts grouped by task and error signature."""
    raise NotImplementedError


@click.command("top")
def top_command() -> int:
    """A live view of queues, running jobs and workers."""
    raise NotImplementedError
