"""What the benchmarks share: a fresh migrated database, and an app served on a free port.

Benchmarks run by hand against the PostgreSQL of `TELEMATICS_BENCH_DATABASE_URL`; each makes a
database of its own there and drops it afterwards, so nothing of a run outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI

from telematics.base.migrate import migrate

ADMIN_DSN = os.environ.get(
    "TELEMATICS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@asynccontextmanager
async def bench_database(prefix: str) -> AsyncIterator[str]:
    """A fresh database named `<prefix>_<random>`, migrated; yields its DSN, drops it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """`app` under uvicorn on a free local port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
