"""Time the retention pruner: N finished jobs spread over H hours, all older than the retention,
pruned by `Maintenance.prune_jobs` into hourly rollups; prints the time, the transactions (batches)
and the longest one (how long other writers may wait).

    .venv/bin/python bench/prune.py --backend sqlite -n 100000 --hours 100
    .venv/bin/python bench/prune.py --backend postgres --postgres-url postgresql://.../roadie_prune
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from roadie import App, FrozenClock
from roadie.maintenance import Maintenance


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=100)
    parser.add_argument("--postgres-url", default=None, help="an empty database of your own")
    options = parser.parse_args()
    clock = FrozenClock()
    if options.backend == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'prune.db'}"
    elif options.postgres_url:
        url = options.postgres_url
    else:
        sys.exit("--postgres-url is required for postgres")
    app = App(url, clock=clock, retention=0)

    @app.task(queue="bench")
    def noop(ctx) -> None:
        pass

    app.migrate()
    for start in range(0, options.n, 1000):
        noop.enqueue_many([{}] * min(1000, options.n - start))
    backend = app.backend
    # Made finished by hand (untimed): job i ends in hour i % hours, after 0-0.9 s of running.
    spread = "(id %% %(hours)s) * 3600" if options.backend == "postgres" else "(id % :hours) * 3600"
    if options.backend == "sqlite":
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        db.execute(
            f"UPDATE roadie_jobs SET state = 'complete', started_at = created_at + {spread},"
            f" finished_at = created_at + {spread} + (id % 10) * 0.1",
            {"hours": options.hours},
        )
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(url) as db:
            db.execute(
                "UPDATE roadie_jobs SET state = 'complete',"
                f" started_at = created_at + ({spread}) * interval '1 second',"
                f" finished_at = created_at + ({spread}) * interval '1 second'"
                " + (id %% 10) * interval '100 milliseconds'",
                {"hours": options.hours},
            )
            db.execute("ANALYZE roadie_jobs")
    clock.advance(options.hours * 3600 + 8 * 86400)
    batches: list[float] = []
    prune_one = backend.job_prune

    def timed(hour, limit):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        try:
            return prune_one(hour, limit)
        finally:
            batches.append(time.perf_counter() - began)

    backend.job_prune = timed  # type: ignore[method-assign]
    maintenance = Maintenance(backend, retention=timedelta(days=7).total_seconds())
    began = time.perf_counter()
    pruned, runs = 0, 0
    while True:
        count, done = maintenance.prune_jobs()
        pruned, runs = pruned + count, runs + 1
        if done:
            break
    elapsed = time.perf_counter() - began
    rollups = app.admin.history(clock.now() - timedelta(days=30))
    print(
        f"{options.backend}: pruned {pruned} jobs over {options.hours} hours in {elapsed:.2f} s"
        f" ({pruned / elapsed:,.0f} jobs/s); {runs} sweeps (budget 20,000 each),"
        f" {len(batches)} delete transactions, longest {max(batches) * 1000:.0f} ms,"
        f" median {sorted(batches)[len(batches) // 2] * 1000:.0f} ms;"
        f" {len(rollups)} rollup rows, {sum(r['jobs'] for r in rollups)} jobs in them"
    )
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
