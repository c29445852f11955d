"""Admin stats as Prometheus metrics: one `admin.stats()` call per scrape, cluster-wide.

`metrics_text(admin)` renders the exposition text (served with `CONTENT_TYPE`) for `roadie
metrics` and the dashboard's `/metrics`; `make_registry(admin)` gives a `CollectorRegistry` for
prometheus_client's own WSGI/ASGI apps. Figures come from the database, not from this process,
so every scrape reads it: scrape every 15 s or more, not every second.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from roadie.admin import Admin

# What `generate_latest` writes: the classic text format (prometheus_client serves it so too).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_WINDOW = "5m"
QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))
OUTCOMES = ("complete", "failed", "cancelled")
WORKER_STATES = ("alive", "dead", "stopped")


class RoadieCollector(Collector):
    """Every `roadie_` family, from one `admin.stats(window=...)` per `collect()`.

    `roadie_jobs_finished_total{queue,outcome}` counts the stored jobs in each terminal state plus
    those the retention pruner rolled up, so pruning never lowers it; an administrator's `jobs
    purge` does, which Prometheus treats as a counter reset (`rate()` and `increase()` cope).
    `roadie_job_retries_total` likewise counts the retries of the stored and rolled-up jobs. The
    summary `roadie_job_duration_seconds` describes the jobs that finished within the window:
    its quantiles, `_count` and `_sum` are over that window, not cumulative; take rates from
    `roadie_jobs_finished_total`.
    """

    def __init__(self, admin: Admin, window: Any = DEFAULT_WINDOW) -> None:
        self.admin = admin
        self.window = window

    def describe(self) -> list[Metric]:
        # Describing would cost a database round trip at registration; nothing to check.
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.admin.stats(window=self.window)
        return iter(families(stats))


def families(stats: dict[str, Any]) -> list[Metric]:
    """The metric families for one `Admin.stats()` result (pure: no database)."""
    window = stats["window"]
    queues: dict[str, dict[str, Any]] = stats["queues"]
    depth = GaugeMetricFamily(
        "roadie_queue_depth", "Jobs stored, by queue and state.", labels=["queue", "state"]
    )
    duration = SummaryMetricFamily(
        "roadie_job_duration_seconds",
        f"Last attempt's run time of the jobs that completed or failed in the last {window:g}s "
        "(quantiles, _count and _sum over that window).",
        labels=["queue"],
    )
    finished = CounterMetricFamily(
        "roadie_jobs_finished",
        "Stored jobs in a terminal state, by outcome (purging lowers it: a counter reset).",
        labels=["queue", "outcome"],
    )
    retries = CounterMetricFamily(
        "roadie_job_retries",
        "Retries (attempts after the first, or awaited) of the stored jobs.",
        labels=["queue"],
    )
    lock_age = GaugeMetricFamily(
        "roadie_lock_age_seconds",
        "Age of the oldest lock held on a running job (0 when none).",
        labels=["queue"],
    )
    pending_age = GaugeMetricFamily(
        "roadie_oldest_pending_age_seconds",
        "How long the oldest due pending job has been due (0 when none).",
        labels=["queue"],
    )
    review = GaugeMetricFamily(
        "roadie_review_backlog", "Failed jobs awaiting an administrator.", labels=["queue"]
    )
    stuck = GaugeMetricFamily(
        "roadie_stuck_jobs",
        "Running jobs that look stuck (past timeout, lease expired, or far past usual).",
        labels=["queue"],
    )
    failure_ratio = GaugeMetricFamily(
        "roadie_failure_ratio",
        f"Failed / finished jobs in the last {window:g}s (NaN when none finished).",
        labels=["queue"],
    )
    for name, entry in queues.items():
        for state, jobs in entry["depth"].items():
            depth.add_metric([name, state], jobs)
        for quantile, key in QUANTILES:
            duration.add_sample(
                "roadie_job_duration_seconds",
                {"queue": name, "quantile": quantile},
                _number(entry["duration"][key]),
            )
        duration.add_metric([name], entry["finished"], entry["duration_sum"])
        for outcome in OUTCOMES:
            finished.add_metric([name, outcome], entry["finished_total"][outcome])
        retries.add_metric([name], entry["retries_total"])
        lock_age.add_metric([name], entry["oldest_lock_age"] or 0.0)
        pending_age.add_metric([name], entry["oldest_pending_age"] or 0.0)
        review.add_metric([name], entry["review"])
        stuck.add_metric([name], entry["stuck"])
        failure_ratio.add_metric([name], _number(entry["failure_rate"]))
    workers = GaugeMetricFamily(
        "roadie_workers",
        "Registered workers: alive (recent heartbeat), dead (silent), stopped.",
        labels=["state"],
    )
    for state in WORKER_STATES:
        workers.add_metric([state], stats["workers"].get(state, 0))
    return [
        depth,
        duration,
        finished,
        retries,
        lock_age,
        pending_age,
        review,
        stuck,
        failure_ratio,
        workers,
    ]


def make_registry(admin: Admin, window: Any = DEFAULT_WINDOW) -> CollectorRegistry:
    """A registry of its own holding only roadie's collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RoadieCollector(admin, window))
    return registry


def metrics_text(admin: Admin, window: Any = DEFAULT_WINDOW) -> bytes:
    """The Prometheus exposition text of one scrape; serve it with `CONTENT_TYPE`.

    Raises what `admin.stats` raises (InvalidInput for a bad window, DatabaseUnavailable)."""
    return generate_latest(make_registry(admin, window))


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)
