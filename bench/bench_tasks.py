"""The benchmark's task module: one no-op task on its own queue.

Workers load it with `roadie worker --app bench_tasks:app` (run from this folder); the database
comes from `--database-url`, so the same module serves both backends.
"""

from __future__ import annotations

from typing import Any

from roadie import App

QUEUE = "bench"

app = App()


@app.task(queue=QUEUE, max_attempts=3)
def noop(ctx: Any) -> None:
    """Does nothing: what is measured is roadie's own cost per job."""
    return None
