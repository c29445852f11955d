"""`roadie demo`: a platform day on the five queues, with live progress and a summary.

It lays out the day's inputs in the demo's folder, starts the SMTP relay and `roadie worker`
processes for every queue, enqueues the day, shows each queue's progress until every job has
ended, and prints what was done and how to explore it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from roadie.app import App
from roadie.config import parse_database_url
from roadie.demo import world
from roadie.demo.smtp import RelayServer
from roadie.demo.tasks import app, enqueue_day
from roadie.errors import InvalidInput, RoadieError, SchemaMissing
from roadie.jobs import TERMINAL_STATES

DEFAULT_URL = "sqlite:///roadie-demo.db"
QUEUES = ("content", "indexing", "analytics", "segmentation", "notifications")
WORKER_PROCESSES, WORKER_CONCURRENCY = 2, 4
DEADLINE = 300.0  # seconds: a day not done by then is reported as stuck
OUTPUTS = ("uploads", "media", "events", "rollups", "outbox", "catalog.db", "search.db", "workers.log",
           "dashboard.log")  # fmt: skip


class DemoFailed(RoadieError):
    """The day could not run to its end (workers died, or it took far too long)."""


def default_workdir(database_url: str) -> Path:
    """Beside a SQLite file (roadie-demo.db -> roadie-demo/), else ./roadie-demo."""
    parsed = parse_database_url(database_url)
    return Path(parsed.url).with_suffix("") if parsed.scheme == "sqlite" else Path("roadie-demo")


def run_demo(
    database_url: str | None = None,
    *,
    small: bool = False,
    keep_running: bool = False,
    workdir: str | Path | None = None,
    port: int = 8000,
    out: Console | None = None,
) -> int:
    """Run a platform day; returns the exit code. `port` is the dashboard's (--keep-running)."""
    out = out or Console(highlight=False)
    url = database_url or DEFAULT_URL
    folder = Path(workdir or default_workdir(url)).resolve()
    plan = world.SMALL if small else world.FULL
    days = world.dates(plan, datetime.now(UTC).date())
    fresh_database(url)
    app.use_database(url)
    app.migrate()
    clear_outputs(folder)
    try:
        with in_folder(folder), RelayServer(world.outbox()) as relay, children() as processes:
            env = {**os.environ, "ROADIE_DEMO_DIR": str(folder),
                   "ROADIE_DEMO_SMTP": f"127.0.0.1:{relay.port}"}  # fmt: skip
            before = counts()
            earlier = app.admin.list_jobs(limit=1)  # PostgreSQL: an earlier day's jobs stay
            first_id = earlier[0].id + 1 if earlier else 1
            processes.append(start_workers(url, env, folder / "workers.log"))
            if keep_running:
                processes += start_dashboard(out, url, env, port, folder / "dashboard.log")
            out.print(
                f"[bold]roadie demo[/]: a {'small ' if small else ''}platform day on {url}, "
                f"{WORKER_PROCESSES} worker processes x {WORKER_CONCURRENCY}; files in {folder}"
            )
            world.prepare(plan, days)
            started = time.monotonic()
            enqueue_day(plan, days)
            after = watch(out, before, processes[0])
            summary(out, before, after, time.monotonic() - started, relay.counts, first_id)
            explore(out, url, keep_running)
            if keep_running:
                up = f" and the dashboard (http://127.0.0.1:{port}/)" if processes[1:] else ""
                out.print(f"\nthe workers{up} keep running; Ctrl-C stops them")
                wait_for_interrupt(processes)
    except DemoFailed as exc:
        log = folder / "workers.log"
        tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
        out.print(f"[red]roadie demo: {exc}[/]; the end of {log}:")
        out.print("\n".join(tail), markup=False)
        return 1
    except KeyboardInterrupt:
        out.print("interrupted: the workers handed their jobs back")
        return 130
    finally:
        app.close()
    return 0


# -- setting up ---------------------------------------------------------------------------------


def fresh_database(url: str) -> None:
    """A SQLite file is replaced by a new one; a PostgreSQL database is kept (earlier demo days
    stay, this day is counted on its own). Neither may hold any other application's jobs."""
    parsed = parse_database_url(url)
    path = Path(parsed.url) if parsed.scheme == "sqlite" else None
    if path is not None and not path.exists():
        return
    with App(url) as probe:
        try:
            tasks = {job.task for job in probe.admin.list_jobs(limit=10_000)}
        except SchemaMissing:
            if path is not None and path.stat().st_size > 0:
                raise InvalidInput(f"{path} is not a roadie database: not replacing it") from None
            tasks = set()
    strangers = tasks - set(app.tasks)
    if strangers:
        raise InvalidInput(
            f"{url} holds jobs of other tasks ({', '.join(sorted(strangers)[:3])}): "
            "roadie demo wants a database of its own"
        )
    if path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def clear_outputs(folder: Path) -> None:
    """Remove what an earlier run left in the demo's folder (and only that)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("*\n")  # nothing in it belongs in a repository
    for name in OUTPUTS:
        for path in folder.glob(f"{name}*"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


@contextmanager
def in_folder(folder: Path) -> Iterator[None]:
    """Point `world` (this process's view of the demo's files) at `folder` for the run."""
    saved = os.environ.get("ROADIE_DEMO_DIR")
    os.environ["ROADIE_DEMO_DIR"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ROADIE_DEMO_DIR", None)
        else:
            os.environ["ROADIE_DEMO_DIR"] = saved


def roadie_command(*args: str) -> list[str]:
    """`roadie ARGS...` with this Python, whatever is on PATH."""
    return [
        sys.executable,
        "-c",
        "import sys; from roadie.cli import main; sys.exit(main())",
        *args,
    ]


def start_workers(url: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = roadie_command(
        "worker", "--app", "roadie.demo:app", "--database-url", url,
        "--queues", ",".join(QUEUES), "--processes", str(WORKER_PROCESSES),
        "--concurrency", str(WORKER_CONCURRENCY), "--grace", "10s",
    )  # fmt: skip
    return spawn(command, env, log)


def start_dashboard(
    out: Console, url: str, env: dict[str, str], port: int, log: Path
) -> list[subprocess.Popen[bytes]]:
    """`roadie dashboard` on loopback, if this roadie has it and it starts."""
    if not has_dashboard():
        return []
    command = roadie_command(
        "dashboard", "--app", "roadie.demo:app", "--database-url", url,
        "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    process = spawn(command, env, log)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1.5)  # long enough to fail on a port in use
    if process.returncode is not None:
        last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        out.print(f"[yellow]the dashboard did not start:[/] {last[0]}", markup=True)
        return []
    out.print(f"dashboard: http://127.0.0.1:{port}/")
    return [process]


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:  # its own session: a Ctrl-C reaches the demo, which stops it
        return subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextmanager
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes started in the block, stopped when it ends, however it ends."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # workers finish or hand back their jobs
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_interrupt(processes: list[subprocess.Popen[bytes]]) -> None:
    """Until Ctrl-C or SIGTERM (or a child process ends)."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        raise DemoFailed("a worker or dashboard process exited")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- watching -----------------------------------------------------------------------------------


def counts() -> dict[str, Counter[str]]:
    """Per queue: jobs per state, and attempts retried so far (`retries`)."""
    stats = app.admin.stats(window="1h")["queues"]
    return {
        queue: Counter({**stats[queue]["depth"], "retries": stats[queue]["retries_total"]})
        if queue in stats
        else Counter()
        for queue in QUEUES
    }


def watch(
    out: Console, before: dict[str, Counter[str]], workers: subprocess.Popen[bytes]
) -> dict[str, Counter[str]]:
    """Progress bars per queue until every job of the day has ended; returns the last counts.

    Jobs of earlier days (PostgreSQL) are subtracted; children and follow-up jobs join the
    totals as they are created."""
    columns = (
        TextColumn("{task.description:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + DEADLINE
    with Progress(*columns, console=out) as progress:
        bars = {queue: progress.add_task(queue, total=None, note="") for queue in QUEUES}
        while True:
            now = counts()
            for queue, bar in bars.items():
                day = now[queue] - before[queue]
                done = sum(day[state] for state in TERMINAL_STATES)
                total = done + day["pending"] + day["running"] + day["waiting"]
                note = f"[red]{day['failed']} failed[/]" if day["failed"] else ""
                if day["retries"]:
                    note += f" [yellow]{day['retries']} retried[/]"
                progress.update(bar, total=total or None, completed=done, note=note)
            if not any(now[q][s] for q in QUEUES for s in ("pending", "running", "waiting")):
                return now
            if workers.poll() is not None:
                raise DemoFailed(f"the workers exited (code {workers.returncode})")
            if time.monotonic() > deadline:
                raise DemoFailed(f"the day did not end within {DEADLINE:.0f}s")
            time.sleep(0.25)


# -- the summary --------------------------------------------------------------------------------


def summary(
    out: Console,
    before: dict[str, Counter[str]],
    after: dict[str, Counter[str]],
    elapsed: float,
    relay: Counter[str],
    first_id: int,
) -> None:
    """The table of jobs per queue, then what the work left behind, read from its outputs."""
    table = Table(title=f"a platform day in {elapsed:.1f}s", title_justify="left")
    table.add_column("queue")
    for column in ("jobs", "complete", "failed", "retried attempts"):
        table.add_column(column, justify="right")
    total: Counter[str] = Counter()
    for queue in QUEUES:
        day = after[queue] - before[queue]
        total += day
        table.add_row(queue, *figures(day))
    table.add_row("total", *figures(total), style="bold")
    out.print(table)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for queue, text in outcomes(relay, first_id).items():
        grid.add_row(queue, text)
    out.print(grid)


def figures(day: Counter[str]) -> list[str]:
    jobs = sum(day[state] for state in ("pending", "running", "waiting", *TERMINAL_STATES))
    return [str(jobs), str(day["complete"]), str(day["failed"]), str(day["retries"])]


def outcomes(relay: Counter[str], first_id: int) -> dict[str, str]:
    """What each queue's work left behind in the demo's folder, and what failed (of the jobs
    from `first_id` on)."""
    with world.database("catalog.db") as db:
        videos = db.execute("SELECT count(*) FROM videos").fetchone()[0]
        kinds = Counter(
            "rendition" if name.endswith("p") else name
            for (name,) in db.execute("SELECT name FROM assets")
        )
        changes = dict(db.execute("SELECT change, count(*) FROM segment_changes GROUP BY 1"))
        members = dict(db.execute("SELECT segment, count(*) FROM segment_members GROUP BY 1"))
    with world.database("search.db") as db:
        documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
    rollups = [world.read_json(path) for path in (world.workdir() / "rollups").glob("*.json")]
    events = sum(
        n
        for r in rollups
        for c in r["users"].values()
        for k, n in c.items()
        if k != "watch_seconds"
    )
    topic = world.TOPICS[0]
    hits = world.search(topic)
    found = f'"{topic}" finds {len(hits)}' + (f', e.g. "{hits[0][1]}"' if hits else "")
    segments = ", ".join(f"{name} {members.get(name, 0)}" for name in world.SEGMENTS)
    failed = Counter(
        job.task for job in app.admin.list_jobs(state="failed", limit=10_000) if job.id >= first_id
    )
    corrupt, bounced = failed.pop("publish_video", 0), failed.pop("send_email", 0)
    broken = f"{corrupt} corrupt uploads, {bounced} emails to closed mailboxes; flagged for review"
    if failed:
        broken += f"; [red]and, not on purpose: {dict(failed)}[/]"
    return {
        "content": f"{videos} videos published: {kinds['rendition']} renditions, "
        f"{kinds['thumbnail']} thumbnails, {kinds['transcript']} transcripts (media/)",
        "indexing": f"{documents} documents in search.db (FTS5); {found}",
        "analytics": f"{len(rollups)} daily rollups of {events:,} events (rollups/)",
        "segmentation": f"{segments}: {changes.get('joined', 0)} joined, "
        f"{changes.get('left', 0)} left",
        "notifications": f"{relay['delivered']} emails in outbox/ (a Maildir); the relay "
        f"greylisted {relay['greylisted']}, stored {relay['unconfirmed']} without confirming "
        f"(sent again, kept once), refused {relay['refused']}",
        "failed": broken,
    }


def explore(out: Console, url: str, keep_running: bool) -> None:
    where = f"--database-url {shlex.quote(url)}"
    publish = app.admin.list_jobs(task="publish_video", state="complete", limit=1)
    lines = [
        ("the broken inputs, flagged for review", f"roadie jobs list --state failed {where}"),
        ("failures grouped by cause", f"roadie failures {where}"),
    ]
    if publish:
        lines.append(("a publish and its children", f"roadie jobs show {publish[0].id} {where}"))
    lines.append(("depth, durations, retries per queue", f"roadie stats {where}"))
    if has_dashboard() and not keep_running:
        lines.append(("the web dashboard", f"roadie dashboard --app roadie.demo:app {where}"))
    out.print("\nexplore:")
    for what, command in lines:
        out.print(f"  [dim]# {what}[/]")
        out.print(f"  {command}", markup=False, soft_wrap=True)


def has_dashboard() -> bool:
    from roadie.cli.common import cli

    return "dashboard" in getattr(cli, "commands", {})
