"""roadie stats, roadie metrics."""

from __future__ import annotations

import click


@click.command("stats")
def stats_command() -> int:
    """Queue depth, throughput, durations, failure rate, retries, lock and pending ages."""
    raise NotImplementedError


@click.command("metrics")
def metrics_command() -> int:
    """Serve the Prometheus /metrics endpoint alone."""
    raise NotImplementedError
