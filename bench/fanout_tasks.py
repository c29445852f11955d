"""The fan-out benchmark's tasks: a parent that spawns N no-op children, with and without a
per-child callback. Workers load it as `roadie worker --app fanout_tasks:app`."""

from __future__ import annotations

from typing import Any

from roadie import App

QUEUE = "fanout"

app = App()


@app.task(queue=QUEUE)
def leaf(ctx: Any) -> None:
    return None


@app.task(queue=QUEUE)
def fan_out(ctx: Any, children: int) -> None:
    for _ in range(children):
        ctx.spawn(leaf)


@app.task(queue=QUEUE)
def fan_out_heard(ctx: Any, children: int) -> None:
    for _ in range(children):
        ctx.spawn(leaf)


@fan_out_heard.on_child_complete
def child_heard(ctx: Any, child: Any) -> None:
    return None
