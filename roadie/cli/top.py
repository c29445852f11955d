"""roadie failures, roadie top."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from roadie.admin import MAX_LIST_LIMIT, Admin
from roadie.backends.base import WorkerInfo
from roadie.cli.common import app_options, console, load_app, print_json, when
from roadie.config import check_int, parse_duration
from roadie.errors import DatabaseUnavailable, InvalidInput
from roadie.jobs import Job
from roadie.report import span

RATE_WINDOW = 60.0  # rates and failure rates in `top` are over the last minute
RUNNING_SHOWN = 20  # running jobs drawn: the stuck ones first, then the longest running
RUNNING_READ = 1000  # running jobs read to choose them from
WORKERS_SHOWN = 20
WORKER_ORDER = {"alive": 0, "dead": 1, "stopped": 2}
MIN_INTERVAL = 0.1
BAR_WIDTH = 12
FRAME_FLOOR = 110  # narrower terminals see the left of each table, uncut


# -- roadie failures -------------------------------------------------------------------------


@click.command("failures")
@click.option(
    "--window", default="24h", show_default=True, metavar="DURATION",
    help="Count failed attempts that ended this long ago or since.",
)  # fmt: skip
@click.option("--queue", default=None, help="Only jobs of this queue.")
@click.option("--task", default=None, help="Only jobs of this task.")
@click.option(
    "--limit", type=int, default=50, show_default=True, help="Groups shown, most frequent first."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of failure groups.")
@app_options
def failures_command(
    window: str,
    queue: str | None,
    task: str | None,
    limit: int,
    as_json: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """Failed attempts grouped by task and error signature (the error's first line with
    numbers, ids and quoted values masked), so one cause shows as one line."""
    if parse_duration(window, "--window") <= 0:
        raise InvalidInput("--window must be longer than 0s")
    limit = check_int(limit, "--limit", (1, MAX_LIST_LIMIT))
    with load_app(app_spec, database_url) as app:
        groups = app.admin.failures(window=window, queue=queue, task=task)
        now = app.admin.now()
    shown = groups[:limit]
    if as_json:
        print_json([group.to_dict() for group in shown])
        return 0
    out = console()
    examples = [f"job {g.example_job}: {first_line(g.example_error)}" for g in shown]
    # One line per group: the figures keep their width, the texts share what is left.
    task_width = min(max([4, *(len(g.task) for g in shown)]), 32)
    left = max(out.width - (8 + 5 + 6 + 9 + 9 + task_width) - 7 * 3, 20)
    signature_width = min(max([9, *(len(g.signature) for g in shown)]), max(left - 24, 9))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name, width in (("attempts", 8), ("jobs", 5), ("failed", 6), ("first", 9), ("last", 9)):
        table.add_column(name, justify="right", no_wrap=True, width=width)
    table.add_column("task", no_wrap=True, overflow="ellipsis", width=task_width)
    table.add_column("signature", no_wrap=True, overflow="ellipsis", width=signature_width)
    table.add_column(
        "example", no_wrap=True, overflow="ellipsis", width=max(left - signature_width, 7)
    )
    for group, example in zip(shown, examples, strict=True):
        table.add_row(
            str(group.attempts), str(group.jobs), str(group.failed_jobs),
            ago(now, group.first_seen), ago(now, group.last_seen), Text(group.task),
            Text(group.signature), Text(example),
        )  # fmt: skip
    if shown:
        out.print(table)
    attempts = sum(group.attempts for group in groups)
    summary = (
        f"{attempts} failed attempt{'s' if attempts != 1 else ''} in {len(groups)} "
        f"group{'s' if len(groups) != 1 else ''} over the last {window}"
    )
    if len(groups) > len(shown):
        more = len(groups) - len(shown)
        summary += f" ({more} more group{'s' if more != 1 else ''}: raise --limit)"
    out.print(summary, markup=False)
    return 0


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def ago(now: datetime, moment: datetime | None) -> str:
    return f"{span((now - moment).total_seconds())} ago" if moment else "-"


# -- roadie top ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What one frame of `roadie top` shows, read at the database's time `now`."""

    now: datetime
    queue: str | None
    stats: dict[str, Any]  # Admin.stats over the last minute
    paused: dict[str, bool]  # queue -> paused
    jobs: list[Job]  # running jobs drawn: the stuck ones first, then the longest running
    running: int  # running jobs in all (more than `jobs` when some are not drawn)
    workers: list[WorkerInfo]
    error: str | None = None  # why the last refresh failed, if it did


def snapshot(admin: Admin, queue: str | None = None) -> Snapshot:
    """Read what `roadie top` shows: one stats call over the last minute, the running jobs, the
    workers (those serving `queue`, given one) and which queues are paused."""
    stats = admin.stats(queue, window=RATE_WINDOW)
    paused = {
        entry["queue"]: bool(entry["paused"])
        for entry in admin.queues()
        if queue is None or entry["queue"] == queue
    }
    running = admin.active_jobs(queue, limit=RUNNING_READ)
    drawn = sorted(running, key=lambda job: job.stuck is None)[:RUNNING_SHOWN]
    workers = [w for w in admin.workers() if queue is None or queue in w.queues]
    workers.sort(key=lambda w: (WORKER_ORDER.get(w.state or "", 3), w.id))
    return Snapshot(
        now=admin.now(),
        queue=queue,
        stats=stats,
        paused=paused,
        jobs=drawn,
        running=max(stats["total"]["depth"]["running"], len(running)),
        workers=workers,
    )


def render_top(snap: Snapshot) -> RenderableType:
    """One frame: a heading, then tables of queues, running jobs and workers."""
    return Group(
        _heading(snap),
        Cropped(_queues_table(snap)),
        Cropped(_jobs_table(snap)),
        Cropped(_workers_table(snap)),
    )


class Cropped:
    """A table drawn at least FRAME_FLOOR columns wide and cut at the terminal's edge: a narrow
    terminal loses the right-hand columns instead of squeezing every column to nothing."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width >= FRAME_FLOOR:
            yield self.table
            return
        wide = options.update_width(FRAME_FLOOR)
        for line in console.render_lines(self.table, wide, pad=False):
            yield from Segment.adjust_line_length(line, options.max_width, pad=False)
            yield Segment.line()


def _heading(snap: Snapshot) -> Text:
    total = snap.stats["total"]
    workers = snap.stats["workers"]
    text = Text()
    text.append("roadie top", style="bold")
    text.append(f"  {when(snap.now)} (database clock)  queue: {snap.queue or 'all'}  ")
    text.append(
        f"pending {total['depth']['pending']}  running {total['depth']['running']}  "
        f"failed {total['depth']['failed']}  review {total['review']}  "
        f"workers {workers['alive']} alive, {workers['dead']} dead"
    )
    if total["stuck"]:
        text.append(f"  {total['stuck']} STUCK", style="bold red")
    if snap.error:
        text.append(f"\nrefresh failed, showing the last frame: {snap.error}", style="bold red")
    return text


def _queues_table(snap: Snapshot) -> Table:
    table = _table("queues")
    table.add_column("queue", min_width=10, max_width=24)
    table.add_column("paused", no_wrap=True)
    for name in ("pending", "running", "waiting", "failed", "rate/s", "fail %"):
        table.add_column(name, justify="right", no_wrap=True)
    for name in ("oldest\npending", "oldest\nlock", "stuck"):
        table.add_column(name, justify="right", no_wrap=True)
    entries = snap.stats["queues"]
    for name in sorted(set(entries) | set(snap.paused)):
        entry = entries.get(name)
        paused = Text("PAUSED", style="bold yellow") if snap.paused.get(name) else Text("")
        table.add_row(_cell(name), paused, *_queue_figures(entry))
    if snap.queue is None:
        table.add_section()
        table.add_row(Text("total", style="bold"), Text(""), *_queue_figures(snap.stats["total"]))
    return table


def _queue_figures(entry: dict[str, Any] | None) -> list[Text]:
    if entry is None:  # paused, and nothing in it
        return [Text(value) for value in ("0", "0", "0", "0", "0.00", "-", "-", "-", "0")]
    depth = entry["depth"]
    rate = entry["failure_rate"]
    stuck = entry["stuck"]
    return [
        Text(str(depth["pending"])),
        Text(str(depth["running"])),
        Text(str(depth["waiting"])),
        Text(str(depth["failed"]), style="red" if depth["failed"] else ""),
        Text(f"{entry['throughput']:.2f}"),
        Text("-" if rate is None else f"{rate * 100:.1f}%", style="red" if rate else ""),
        Text(span(entry["oldest_pending_age"])),
        Text(span(entry["oldest_lock_age"])),
        Text(str(stuck), style="bold red" if stuck else ""),
    ]


def _jobs_table(snap: Snapshot) -> Table:
    title = f"running jobs ({snap.running})"
    if snap.running > len(snap.jobs):
        title += f", {len(snap.jobs)} shown: the stuck ones, then the longest running"
    table = _table(title)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)  # STUCK and why, first so a narrow terminal shows it
    table.add_column("task", min_width=10, max_width=28)
    table.add_column("queue", min_width=8, max_width=16)
    table.add_column("worker", min_width=12, max_width=40)
    table.add_column("progress", no_wrap=True, width=BAR_WIDTH)
    table.add_column("", min_width=10, max_width=32)
    table.add_column("run time", justify="right", no_wrap=True)
    table.add_column("lock age", justify="right", no_wrap=True)
    table.add_column("lease", justify="right", no_wrap=True)
    for job in snap.jobs:
        fraction, message = _progress(job)
        age = (snap.now - job.started_at).total_seconds() if job.started_at else None
        table.add_row(
            Text(str(job.id)),
            Text(f"STUCK: {job.stuck}", style="bold red") if job.stuck else Text(""),
            _cell(job.task),
            _cell(job.queue),
            _cell(job.locked_by or "-"),
            ProgressBar(total=1.0, completed=fraction or 0.0, width=BAR_WIDTH),
            _cell("-" if fraction is None else f"{fraction * 100:.0f}% {message}".rstrip()),
            Text(span(age)),
            Text(span(age)),  # the lock is taken by the claim that starts the attempt
            _lease(snap.now, job),
            style="red" if job.stuck else None,
        )
    return table


def _table(title: str) -> Table:
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )


def _cell(text: str, style: str = "") -> Text:
    """A cell that a narrow terminal cuts short (…) rather than wraps: its column may shrink."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def _progress(job: Job) -> tuple[float | None, str]:
    if not job.progress:
        return None, ""
    try:
        fraction = min(max(float(job.progress.get("fraction") or 0.0), 0.0), 1.0)
    except (TypeError, ValueError):
        fraction = 0.0
    return fraction, str(job.progress.get("message") or "")


def _lease(now: datetime, job: Job) -> Text:
    if job.lock_expires_at is None:
        return Text("-")
    left = (job.lock_expires_at - now).total_seconds()
    if left < 0:
        return Text(f"expired {span(-left)} ago", style="red")
    return Text(f"{span(left)} left")


def _workers_table(snap: Snapshot) -> Table:
    shown = snap.workers[:WORKERS_SHOWN]
    title = f"workers ({len(snap.workers)})"
    if len(snap.workers) > len(shown):
        title += f", {len(shown)} shown"
    table = _table(title)
    table.add_column("id", min_width=16, max_width=48)
    table.add_column("host", min_width=8, max_width=24)
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("queues", min_width=8, max_width=40)
    table.add_column("jobs", justify="right", no_wrap=True)
    table.add_column("heartbeat", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    styles = {"alive": "green", "dead": "bold red", "stopped": "dim"}
    for worker in shown:
        beat = (
            f"{span((snap.now - worker.heartbeat_at).total_seconds())} ago"
            if worker.heartbeat_at
            else "-"
        )
        table.add_row(
            _cell(worker.id),
            _cell(worker.host),
            Text(str(worker.pid)),
            _cell(",".join(worker.queues)),
            Text(str(worker.jobs)),
            Text(beat),
            Text(worker.state or "-", style=styles.get(worker.state or "", "")),
        )
    return table


@click.command("top")
@click.option("--queue", default=None, help="Only this queue (and the workers serving it).")
@click.option(
    "--interval", default="1s", show_default=True, metavar="DURATION", help="Time between frames."
)
@click.option("--once", is_flag=True, help="Print one frame and exit (also without a terminal).")
@app_options
def top_command(
    queue: str | None,
    interval: str,
    once: bool,
    app_spec: str | None,
    database_url: str | None,
) -> int:
    """A live view of queues, running jobs and workers; Ctrl-C leaves it."""
    pause = parse_duration(interval, "--interval")
    if pause < MIN_INTERVAL:
        raise InvalidInput(f"--interval must be at least {MIN_INTERVAL}s")
    try:
        with load_app(app_spec, database_url) as app:
            last = snapshot(app.admin, queue)  # a bad queue or no database ends the command
            out = console()
            if once or not sys.stdout.isatty():
                out.print(render_top(last))
                return 0
            with Live(render_top(last), console=out, auto_refresh=False, screen=False) as live:
                while True:
                    time.sleep(pause)
                    try:
                        last = snapshot(app.admin, queue)
                    except DatabaseUnavailable as exc:  # keep watching: show it, then retry
                        last = replace(last, error=str(exc))
                    live.update(render_top(last), refresh=True)
    except KeyboardInterrupt:  # Ctrl-C is how one leaves `top`
        return 0
