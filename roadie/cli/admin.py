"""roadie admin expire-stuck|clear-locks, roadie queues, roadie review, roadie audit."""

from __future__ import annotations

import click


@click.group("admin")
def admin_group() -> None:
    """Force stuck jobs out of running; release locks of dead workers."""


@click.command("queues")
def queues_command() -> int:
    """List queues with their depth; pause or resume one."""
    raise NotImplementedError


@click.group("review")
def review_group() -> None:
    """Failed jobs awaiting an administrator."""


@click.command("audit")
def audit_command() -> int:
    """Who did which administrative action, when."""
    raise NotImplementedError
