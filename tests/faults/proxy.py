"""A small asyncio TCP proxy between workers and PostgreSQL, to break the network on purpose.

toxiproxy is not packaged, and the tests only need four faults, switched from the test's thread:
- `latency(seconds)`: every chunk waits that long before it is passed on, in both directions;
- `blackhole()`: connections stay open and new ones are accepted, but nothing passes either way
  (bytes wait in the kernel's buffers, as in a partition, where TCP keeps retransmitting: no
  error reaches either side);
- `reset()`: every open connection is closed abruptly (RST), as when a middlebox restarts;
- `heal()`: back to plain forwarding; what waited during a blackhole flows again.
The loop runs in a daemon thread of its own; `port` is where clients connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

CHUNK = 65536


class Proxy:
    """Forward 127.0.0.1:`port` to `target_host`:`target_port`, with faults on demand."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.delay = 0.0
        self.connections = 0  # accepted so far
        self._open = threading.Event()  # set: bytes flow; clear: blackhole
        self._open.set()
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    async def _serve(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- faults, called from the test's thread -----------------------------------------------

    def latency(self, seconds: float) -> None:
        self.delay = seconds

    def blackhole(self) -> None:
        self._call(lambda: self._flowing.clear() if self._flowing else None)

    def heal(self) -> None:
        self.delay = 0.0
        self._call(lambda: self._flowing.set() if self._flowing else None)

    def reset(self) -> None:
        """Close every open connection with an RST (SO_LINGER 0), both sides."""
        self._call(self._reset_all)

    def stop(self) -> None:
        async def close() -> None:
            self._reset_all()
            if self._server is not None:
                self._server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _call(self, fn: Any) -> None:
        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    # -- forwarding --------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        assert self._flowing is not None
        await self._flowing.wait()  # a blackhole accepts, then answers nothing
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._drop(writer)
            return
        self._writers.add(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer, writer), self._pipe(up_reader, writer, up_writer)
        )

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()  # blackholed: leave the bytes in the kernel
                data = await source.read(CHUNK)
                if not data:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._flowing.wait()  # read just before the blackhole: held, not passed
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._drop(sink)
            self._drop(other)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        with contextlib.suppress(Exception):
            writer.close()
