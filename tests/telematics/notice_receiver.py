"""A real HTTP webhook receiver for the notices tests: asyncio.start_server, HTTP/1.1, no mocks.

It records every request (headers and raw body), checks the signature with the subscription's
secret the way a customer would (`telematics.notices.payload.verify`), and answers 503 to the
first `fail_first` requests, then 204.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from telematics.notices.payload import verify


@dataclass
class Receipt:
    headers: dict[str, str]
    body: bytes
    signed: bool


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0
    port: int = 0
    receipts: list[Receipt] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            raw = await asyncio.wait_for(
                reader.readexactly(int(headers.get("content-length", "0"))), 10
            )
            signed = verify(
                self.secret,
                headers.get("x-timestamp", ""),
                raw,
                headers.get("x-signature", ""),
                now_s=time.time(),
            )
            self.receipts.append(Receipt(headers, raw, signed))
            failing = len(self.receipts) <= self.fail_first
            status = b"503 Service Unavailable" if failing else b"204 No Content"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
