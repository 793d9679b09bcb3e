"""The app under a real uvicorn on a free port, in the test's own event loop, for the console's
event stream and browser tests (an in-process ASGI transport does not stream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn

from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.api.context import ApiContext
from telematics.base.config import Settings
from telematics.base.metrics import Metrics
from telematics.store.registry import SourceDirectory
from telematics.web import build_app
from telematics.wire.decode import Limits
from tests.telematics.harness import ADMIN_TOKEN

KB = KnowledgeBase.load()


@asynccontextmanager
async def live_console(pool: asyncpg.Pool, **settings: object) -> AsyncIterator[str]:
    """The service's HTTP app on 127.0.0.1 (its base URL), event streams polling fast."""
    ctx = ApiContext(
        pool=pool, directory=SourceDirectory(), metrics=Metrics(), admin_token=ADMIN_TOKEN,
        limits=Limits(), knowledge=KB, rules=RuleBook.load(), gateway_connected=lambda: True,
        settings=Settings(**{"console_poll_s": 0.2, **settings}),  # type: ignore[arg-type]
    )  # fmt: skip
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(ctx), host="127.0.0.1", port=0, log_level="warning", lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )  # fmt: skip
    serving = asyncio.ensure_future(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
