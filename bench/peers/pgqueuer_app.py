"""pgqueuer's side of the peer comparison: schema, 10,000 no-op jobs, and a draining worker.

Runs in pgqueuer's own virtual environment (bench/.peers/pgqueuer), started by bench/peers/run.py:

    python pgqueuer_app.py prepare N      # install pgqueuer's schema, enqueue N no-op jobs
    python pgqueuer_app.py work           # one worker process: QueueManager.run(mode=drain)

The database is $PEER_DSN (a fresh database per run, made by the runner). The worker is
pgqueuer's QueueManager on a psycopg async connection, `batch_size` 10 (its default, and the
issue's reference figure's setting), `mode=drain`, so it exits once the queue is empty, like
`roadie worker --burst`. Each job records its start and finish with bench/peers/stamps.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import psycopg
import stamps
from pgqueuer import PsycopgDriver, Queries, QueueManager
from pgqueuer.domain.types import QueueExecutionMode
from pgqueuer.models import Job

ENTRYPOINT = "noop"
ENQUEUE_BATCH = 1000


async def connect() -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(os.environ["PEER_DSN"], autocommit=True)


async def prepare(n: int) -> None:
    """Schema and N jobs, untimed: the measurement is the drain."""
    async with await connect() as conn:
        queries = Queries(PsycopgDriver(conn))
        await queries.install()
        for start in range(0, n, ENQUEUE_BATCH):
            size = min(ENQUEUE_BATCH, n - start)
            await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)


async def work(batch_size: int) -> None:
    async with await connect() as conn:
        manager = QueueManager(Queries(PsycopgDriver(conn)))

        @manager.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            stamps.record(time.time())

        await manager.run(batch_size=batch_size, mode=QueueExecutionMode.drain)


def main() -> None:
    command = sys.argv[1]
    if command == "prepare":
        asyncio.run(prepare(int(sys.argv[2])))
    elif command == "work":
        asyncio.run(work(int(os.environ.get("PEER_BATCH", "10"))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
