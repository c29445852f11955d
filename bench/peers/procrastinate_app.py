"""procrastinate's side of the peer comparison: schema, 10,000 no-op jobs, a draining worker.

Runs in procrastinate's own virtual environment (bench/.peers/procrastinate), started by
bench/peers/run.py:

    python procrastinate_app.py prepare N   # apply procrastinate's schema, defer N no-op jobs
    python procrastinate_app.py work        # one worker process, concurrency $PEER_CONCURRENCY

The database is $PEER_DSN (a fresh database per run, made by the runner). The worker is
`App.run_worker_async(concurrency=C, wait=False)`: `wait=False` makes it exit once it has caught
up with the queue, like `roadie worker --burst`. The task is async (procrastinate's concurrency
runs async jobs side by side in one event loop). Each job records its start and finish with
bench/peers/stamps.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

import procrastinate
import stamps

QUEUE = "bench"
DEFER_BATCH = 1000

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["PEER_DSN"]))


@app.task(name="noop", queue=QUEUE)
async def noop() -> None:
    stamps.record(time.time())


async def prepare(n: int) -> None:
    """Schema and N jobs, untimed: the measurement is the drain."""
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, n, DEFER_BATCH):
            await noop.batch_defer_async(*([{}] * min(DEFER_BATCH, n - start)))


async def work(concurrency: int) -> None:
    async with app.open_async():
        await app.run_worker_async(queues=[QUEUE], concurrency=concurrency, wait=False)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    command = sys.argv[1]
    if command == "prepare":
        asyncio.run(prepare(int(sys.argv[2])))
    elif command == "work":
        asyncio.run(work(int(os.environ.get("PEER_CONCURRENCY", "4"))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
