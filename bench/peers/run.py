"""roadie against pgqueuer, procrastinate and Celery: the same 10,000 no-op jobs, drained by each.

    .venv/bin/python bench/peers/run.py                       # all, median of 3: ~5 min
    .venv/bin/python bench/peers/run.py --systems roadie-postgres,celery --repeat 1
    make bench-peers

Each peer lives in its own virtual environment under bench/.peers/<name> (git-ignored), created
and `pip install`ed from PyPI on first use at the pinned version below, reused after. Only their
app code is ours (bench/peers/<name>_app.py). Per run, every system gets the same work:
1. a fresh queue (PostgreSQL: a new database; Redis: the bench queue purged) and N no-op jobs
   enqueued in bulk, untimed;
2. the workers started: 2 processes (`--workers`), each with concurrency 4 where the system has
   such a knob (roadie `--processes 2 --concurrency 4 --burst`; procrastinate 2 x
   `run_worker(concurrency=4, wait=False)`; pgqueuer 2 x `QueueManager.run(batch_size=10,
   mode=drain)`, async with no concurrency cap; Celery one worker `--pool prefork --concurrency
   2`, i.e. 2 worker processes, through Redis);
3. each job appends "<start> <finish>" (time.time()) to a per-process file (stamps.py), and the
   steady rate is jobs / (last finish - first start): the same definition as roadie's own bench
   (first job started to last job done), taken the same way for every system, roadie included.
   For roadie the database-clock figure (finished_at / started_at) is reported beside it.
Systems are interleaved run by run (roadie, pgqueuer, procrastinate, Celery, roadie on SQLite,
then again), so a noisy spell hits all of them. Results: bench/results/peers-<timestamp>.json and
bench/results/peers-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
PEERS_HOME = BENCH / ".peers"  # git-ignored: the peers' virtual environments
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(HERE))

import roadie_app  # noqa: E402
import stamps  # noqa: E402
from throughput import (  # noqa: E402
    DEFAULT_POSTGRES_URL,
    PostgresTarget,
    SQLiteTarget,
    Target,
    console,
    machine,
    problems_in,
    roadie_command,
    save_document,
    source_version,
    warn_if_busy,
)

# name -> (distribution, pinned version, pip requirements)
PEERS: dict[str, tuple[str, str, list[str]]] = {
    "pgqueuer": ("pgqueuer", "1.6.0", ["pgqueuer==1.6.0", "psycopg[binary]>=3.2"]),
    "procrastinate": ("procrastinate", "3.10.0", ["procrastinate==3.10.0", "psycopg[binary]>=3.2"]),
    "celery": ("celery", "5.7.0", ["celery[redis]==5.7.0"]),
}
# Issue 7's reference figures (2 cores, PG 15, durable commits, 10,000 no-op jobs, steady).
REFERENCE = {"pgqueuer": 4_100, "procrastinate": 630, "celery": 860}
SYSTEMS = ["roadie-postgres", "pgqueuer", "procrastinate", "celery", "roadie-sqlite"]
ENQUEUE_BATCH = 1000


# -- the peers' virtual environments -------------------------------------------------------------


def peer_python(name: str, reinstall: bool = False) -> tuple[Path, str]:
    """The peer's interpreter, its venv made and its package installed if missing or stale."""
    dist, version, requirements = PEERS[name]
    venv = PEERS_HOME / name
    python = venv / "bin" / "python"
    if not python.exists():
        console.print(f"creating {venv.relative_to(BENCH.parent)} ...")
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    probe = f"import importlib.metadata as m; print(m.version({dist!r}))"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if reinstall or found.returncode != 0 or found.stdout.strip() != version:
        console.print(f"installing {' '.join(requirements)} into {venv.name} ...")
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *requirements],
            check=True,
        )  # fmt: skip
    return python, version


# -- running one drain ---------------------------------------------------------------------------


def peer_env(stamp_dir: Path, **extra: str) -> dict[str, str]:
    paths = [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PEER_STAMPS": str(stamp_dir)}
    env.pop("ROADIE_DATABASE_URL", None)
    return env | extra


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)


def drain(
    workers: list[subprocess.Popen[bytes]],
    stamp_dir: Path,
    n: int,
    timeout: float,
    stop_when_done: bool,
) -> dict[str, Any]:
    """Wait until N jobs have stamped (or every worker exited, or the timeout), stop the
    workers if they do not exit by themselves, and compute the steady rate from the stamps."""
    began = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stamps.count(stamp_dir) >= n:
            break
        if all(worker.poll() is not None for worker in workers):
            break
        time.sleep(0.05)
    done_wall = time.perf_counter() - began
    for worker in workers:
        if worker.poll() is None and (stop_when_done or time.monotonic() >= deadline):
            worker.send_signal(signal.SIGTERM)
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=60))
        except subprocess.TimeoutExpired:
            worker.kill()
            codes.append(worker.wait())
    pairs = stamps.read(stamp_dir)
    first = min((start for start, _ in pairs), default=None)
    last = max((finish for _, finish in pairs), default=None)
    steady = last - first if pairs else None
    return {
        "jobs": n,
        "stamped": len(pairs),
        "steady_seconds": steady,
        "jobs_per_s": len(pairs) / steady if steady else None,
        "wall_seconds": done_wall,
        "jobs_per_process": sorted(
            (p.read_bytes().count(b"\n") for p in stamp_dir.glob("*.txt")), reverse=True
        ),
        "exit_codes": codes,
    }


def admin_database(admin_url: str, name: str, create: bool) -> str:
    """Drop (and create) the bench's own database `name`; return its URL. Touches no other."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def run_roadie(
    backend: str, args: argparse.Namespace, stamp_dir: Path, logs: Path
) -> dict[str, Any]:
    target: Target = (
        SQLiteTarget()
        if backend == "sqlite"
        else PostgresTarget(args.postgres_url, f"{args.database_prefix}roadie")
    )
    target.setup()
    try:
        app = roadie_app.app
        app.use_database(target.url)
        try:
            app.migrate()
            for begin in range(0, args.n, ENQUEUE_BATCH):
                roadie_app.noop.enqueue_many([{}] * min(ENQUEUE_BATCH, args.n - begin))
        finally:
            app.close()
        log = logs / f"roadie-{backend}-{time.time_ns()}.log"
        command = [
            *roadie_command(), "worker", "--app", "roadie_app:app", "--database-url", target.url,
            "--queues", roadie_app.QUEUE, "--processes", str(args.workers),
            "--concurrency", str(args.concurrency), "--burst", "--log-level", "INFO",
            *(["--prefetch", str(args.roadie_prefetch)] if args.roadie_prefetch else []),
        ]  # fmt: skip
        worker = start(command, peer_env(stamp_dir), log)
        result = drain([worker], stamp_dir, args.n, args.timeout, stop_when_done=False)
        rows = [row for row in target.job_times() if row[0] == "complete"]
        if rows:
            steady = max(r[4] for r in rows) - min(r[3] for r in rows)
            result["db_clock_jobs_per_s"] = len(rows) / steady if steady else None
        result["extra_attempts"] = sum(r[1] for r in target.job_times()) - args.n
        result["log_problems"] = problems_in(log)[:20]
        if backend == "postgres":
            result["database"] = target.describe()
        return result
    finally:
        target.teardown()


def run_postgres_peer(
    name: str, args: argparse.Namespace, stamp_dir: Path, logs: Path
) -> dict[str, Any]:
    """pgqueuer or procrastinate: a fresh database, `prepare N`, then 2 `work` processes."""
    python, version = args.pythons[name]
    database = f"{args.database_prefix}{name}"
    url = admin_database(args.postgres_url, database, create=True)
    try:
        env = peer_env(
            stamp_dir,
            PEER_DSN=url,
            PEER_CONCURRENCY=str(args.concurrency),
            PEER_BATCH=str(args.pgqueuer_batch),
        )
        # Imported, not run as __main__ (procrastinate warns about an App in the main module).
        app = [str(python), "-c", f"import {name}_app as app; app.main()"]
        log = logs / f"{name}-{time.time_ns()}.log"
        with log.open("ab") as out:
            subprocess.run(
                [*app, "prepare", str(args.n)], env=env, cwd=HERE, check=True, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        workers = [start([*app, "work"], env, log) for _ in range(args.workers)]
        result = drain(workers, stamp_dir, args.n, args.timeout, stop_when_done=False)
        result["version"] = version
        result["log_problems"] = problems_in(log)[:20]
        return result
    finally:
        admin_database(args.postgres_url, database, create=False)


def run_celery(args: argparse.Namespace, stamp_dir: Path, logs: Path) -> dict[str, Any]:
    """Celery through Redis: purge + send N tasks, one prefork worker, stopped when all stamped."""
    python, version = args.pythons["celery"]
    env = peer_env(stamp_dir, PEER_REDIS=args.redis_url)
    log = logs / f"celery-{time.time_ns()}.log"
    with log.open("ab") as out:
        subprocess.run(
            [python, str(HERE / "celery_app.py"), "prepare", str(args.n)], env=env, cwd=HERE,
            check=True, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    command = [
        str(python), "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork",
        "--concurrency", str(args.celery_concurrency), "--queues", "roadie_peer_bench",
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    worker = start(command, env, log)
    result = drain([worker], stamp_dir, args.n, args.timeout, stop_when_done=True)
    result["version"] = version
    result["log_problems"] = problems_in(log)[:20]
    return result


def celery_broker_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Redis's persistence settings, for the record (Celery's durability is Redis's)."""
    python, _ = args.pythons["celery"]
    probe = (
        "import json, os, redis; r = redis.Redis.from_url(os.environ['PEER_REDIS']);"
        "info = r.info('server');"
        "print(json.dumps({'redis_version': info.get('redis_version'),"
        " **r.config_get('appendonly'), **r.config_get('appendfsync'), **r.config_get('save')}))"
    )
    found = subprocess.run(
        [python, "-c", probe], env={**os.environ, "PEER_REDIS": args.redis_url},
        capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(found.stdout) if found.returncode == 0 else {"error": found.stderr[-500:]}


# -- the table -----------------------------------------------------------------------------------

SETTINGS = {
    "roadie-postgres": "PostgreSQL, {workers} processes x {concurrency}, --burst",
    "roadie-sqlite": "SQLite, {workers} processes x {concurrency}, --burst",
    "pgqueuer": "PostgreSQL, {workers} processes, batch_size {pgqueuer_batch}, mode=drain",
    "procrastinate": "PostgreSQL, {workers} processes x concurrency {concurrency}, wait=False",
    "celery": "Redis, 1 worker, prefork x {celery_concurrency}",
}


def median_rate(runs: list[dict[str, Any]], key: str = "jobs_per_s") -> float | None:
    rates = [run[key] for run in runs if run.get(key) and run.get("stamped") == run.get("jobs")]
    return statistics.median(rates) if rates and len(rates) == len(runs) else None


def print_table(results: dict[str, Any], args: argparse.Namespace) -> str:
    """Print the rich table; return it as Markdown too (for bench/README.md)."""
    roadie_pg = results.get("roadie-postgres", {}).get("median")
    roadie_lite = results.get("roadie-sqlite", {}).get("median")
    header = [
        "system", "version", "setup", "jobs/s (median)", "runs", "issue's reference",
        "roadie PG ÷ it", "roadie SQLite ÷ it",
    ]  # fmt: skip
    body = []
    for name, result in results.items():
        rate = result.get("median")
        runs = ", ".join(
            f"{run['jobs_per_s']:,.0f}" if run.get("jobs_per_s") else "failed"
            for run in result.get("runs", [])
        )
        body.append(
            [
                name,
                result.get("version", ""),
                SETTINGS[name].format(**vars(args))
                + (
                    f", --prefetch {args.roadie_prefetch}"
                    if name.startswith("roadie") and args.roadie_prefetch
                    else ""
                ),
                "failed" if rate is None else f"{rate:,.0f}",
                runs,
                f"{REFERENCE[name]:,}" if name in REFERENCE else "",
                f"{roadie_pg / rate:.2f}" if roadie_pg and rate else "",
                f"{roadie_lite / rate:.2f}" if roadie_lite and rate else "",
            ]
        )
    table = Table(title=f"{args.n:,} no-op jobs, steady rate from the jobs' own stamps")
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i < 3 else "right")
    for row in body:
        table.add_row(*row)
    Console(highlight=False, width=None if sys.stdout.isatty() else 170).print(table)
    aligns = ["---"] * 3 + ["---:"] * (len(header) - 3)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated ({','.join(SYSTEMS)})"
    )
    parser.add_argument("-n", type=int, default=10_000, help="jobs per drain (10000)")
    parser.add_argument("--repeat", type=int, default=3, help="drains per system; median (3)")
    parser.add_argument("-w", "--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument(
        "-c", "--concurrency", type=int, default=4, help="roadie/procrastinate per process (4)"
    )
    parser.add_argument("--pgqueuer-batch", type=int, default=10, help="pgqueuer batch_size (10)")
    parser.add_argument(
        "--celery-concurrency", type=int, default=None, help="prefork processes (= --workers)"
    )
    parser.add_argument("--roadie-prefetch", type=int, default=None, help="roadie's --prefetch")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROADIE_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a server to create the bench databases on (or ROADIE_BENCH_POSTGRES_URL)",
    )
    parser.add_argument(
        "--database-prefix",
        default="roadie_bench_peers_",
        help="the databases made and dropped here: <prefix><system>",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="Celery's broker")
    parser.add_argument("--timeout", type=float, default=600, help="per drain, seconds (600)")
    parser.add_argument("--reinstall", action="store_true", help="pip install the peers again")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if args.celery_concurrency is None:
        args.celery_concurrency = args.workers
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.pythons = {
        name: peer_python(name, args.reinstall) for name in PEERS if name in args.systems
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    warn_if_busy()
    load_before = os.getloadavg()
    runners: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
        "roadie-postgres": lambda d, logs: run_roadie("postgres", args, d, logs),
        "roadie-sqlite": lambda d, logs: run_roadie("sqlite", args, d, logs),
        "pgqueuer": lambda d, logs: run_postgres_peer("pgqueuer", args, d, logs),
        "procrastinate": lambda d, logs: run_postgres_peer("procrastinate", args, d, logs),
        "celery": lambda d, logs: run_celery(args, d, logs),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.systems}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="roadie-peers-") as work:
        logs = Path(work)
        for i in range(args.repeat):
            for name in args.systems:
                stamp_dir = Path(tempfile.mkdtemp(prefix=f"stamps-{name}-", dir=work))
                console.print(f"[bold]{name}[/bold] run {i + 1}/{args.repeat} ...", end=" ")
                try:
                    run = runners[name](stamp_dir, logs)
                except Exception as exc:  # one broken system must not lose the others
                    run = {"jobs": args.n, "stamped": 0, "jobs_per_s": None, "error": repr(exc)}
                rate = run.get("jobs_per_s")
                note = "" if run.get("stamped") == args.n else f" ({run.get('stamped')} stamped)"
                console.print(
                    (f"{rate:,.0f} jobs/s" if rate else f"failed {run.get('error', '')}") + note
                )
                runs[name].append(run)
    results: dict[str, Any] = {}
    for name in args.systems:
        results[name] = {
            "version": args.pythons[name][1] if name in args.pythons else "this checkout",
            "median": median_rate(runs[name]),
            "runs": runs[name],
        }
        if name.startswith("roadie"):
            results[name]["db_clock_median"] = median_rate(runs[name], "db_clock_jobs_per_s")
    markdown = print_table(results, args)
    elapsed = time.monotonic() - began
    console.print(f"took {elapsed:.0f} s; load average before {load_before[0]:.2f}")
    for name in ("roadie-postgres", "roadie-sqlite"):
        if results.get(name, {}).get("db_clock_median"):
            console.print(
                f"{name}: database-clock steady rate (finished_at/started_at) "
                f"{results[name]['db_clock_median']:,.0f} jobs/s"
            )
    if args.markdown:
        print(markdown)
    if not args.no_save:
        settings = {
            key: value for key, value in vars(args).items() if key not in ("pythons", "reinstall")
        }
        document = {
            "timestamp": stamp,
            "settings": settings,
            "seconds": elapsed,
            "machine": machine(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "source": source_version(),
            "redis": celery_broker_settings(args) if "celery" in args.pythons else None,
            "reference": REFERENCE,
            "table_markdown": markdown,
            "results": results,
        }
        path, latest = save_document("peers", stamp, document)
        console.print(
            f"wrote {path.relative_to(BENCH.parent)} and {latest.relative_to(BENCH.parent)}"
        )
    return 0 if all(result["median"] for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
