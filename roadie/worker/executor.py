"""Where handlers run: sync tasks on a pool of threads, async tasks on one event loop.

The threads are daemons: a handler stuck in a C call cannot keep a stopping worker alive after
its jobs were released.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any


class ThreadPool:
    """A fixed set of daemon threads taking callables from one queue."""

    def __init__(self, size: int, name: str = "roadie-job") -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        self._queue.put(fn)

    def _work(self) -> None:
        while (fn := self._queue.get()) is not None:
            fn()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)


class EventLoopThread:
    """One asyncio loop on a daemon thread, started on first use, for `async def` tasks."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="roadie-async", daemon=True
                ).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def shutdown(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
