"""A TCP proxy a test can cut and restore, to take a real server away without stopping it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target. `cut()` drops every connection and refuses new
    ones until `restore()`; the server behind it keeps running for everyone else."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        # With `hold_bulk_bytes` set, the first client chunk of at least that many bytes (a COPY
        # of a batch, say) is held back, never forwarded, and `bulk_seen` is set: the server
        # waits on a write that is in flight, as a very slow database would.
        self.hold_bulk_bytes: int | None = None
        self.bulk_seen = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepts: set[asyncio.Task[object]] = set()
        self.cut_now = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._accepts.add(task)
            task.add_done_callback(self._accepts.discard)
        if self.cut_now:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, upstream=True)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool = False
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                hold = self.hold_bulk_bytes
                if upstream and hold is not None and len(data) >= hold:
                    self.bulk_seen.set()
                    await asyncio.Event().wait()  # held until the connection is cut
                writer.write(data)
                await writer.drain()

    def cut(self) -> None:
        self.cut_now = True
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.cut_now = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._accepts, return_exceptions=True)


@contextlib.asynccontextmanager
async def database_proxy(dsn: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A started proxy to the PostgreSQL server of `dsn`, and `dsn` through it."""
    parts = urlsplit(dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    user = f"{parts.username}@" if parts.username else ""
    try:
        yield urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}")), proxy
    finally:
        await proxy.close()
