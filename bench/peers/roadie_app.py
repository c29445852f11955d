"""roadie's side of the peer comparison: the same no-op task as the peers', stamping its start
and finish with bench/peers/stamps.py, so roadie is timed exactly like them.

Workers load it with `roadie worker --app roadie_app:app` (run from this folder); the database
comes from `--database-url`.
"""

from __future__ import annotations

import time
from typing import Any

import stamps

from roadie import App

QUEUE = "peers"

app = App()


@app.task(queue=QUEUE, max_attempts=3)
def noop(ctx: Any) -> None:
    stamps.record(time.time())
