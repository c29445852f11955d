"""Celery's side of the peer comparison: 10,000 no-op tasks through Redis, a prefork worker.

Runs in Celery's own virtual environment (bench/.peers/celery), started by bench/peers/run.py:

    python celery_app.py prepare N   # purge the bench queue, send N no-op tasks
    python -m celery -A celery_app worker --pool prefork --concurrency 2 ...   # the runner

The broker is $PEER_REDIS (redis://127.0.0.1:6379/<db>), queue `roadie_peer_bench`. No result
backend (`ignore_result`), Celery's defaults otherwise: acks before the task runs
(`task_acks_late` off), prefetch multiplier 4. Redis keeps its own persistence settings (the
issue's reference figure's setup); nothing here fsyncs. Celery has no "exit when the queue is
empty" mode, so the runner stops the worker (SIGTERM, warm shutdown) once every job has written
its stamp (bench/peers/stamps.py).
"""

from __future__ import annotations

import os
import sys
import time

import stamps
from celery import Celery

QUEUE = "roadie_peer_bench"

app = Celery("roadie_peer_bench", broker=os.environ["PEER_REDIS"])
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop", ignore_result=True)
def noop() -> None:
    stamps.record(time.time())


def prepare(n: int) -> None:
    """An empty queue, then N tasks, untimed: the measurement is the drain."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(QUEUE)
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)


if __name__ == "__main__":
    if sys.argv[1] != "prepare":
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
    prepare(int(sys.argv[2]))
