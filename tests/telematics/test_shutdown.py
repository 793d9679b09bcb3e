"""Stopping never hangs on a database that does not answer."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings

import orjson

from diagnosis.engine import Engine
from diagnosis.knowledge import KnowledgeBase
from diagnosis.rules import RuleBook
from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.services.diagnose import Diagnoser
from telematics.wire.decode import DecodedBatch, Limits, decode_message
from tests.conftest import unique
from tests.proxy import database_proxy

BATCHES = 30


def _committed_batch(machine: str, now_ms: int) -> DecodedBatch:
    batch = DecodedBatch()
    payload = orjson.dumps({"readings": [{"ts": now_ms - i * 1000} for i in range(10)]})
    decode_message(
        f"machines/{machine}/telemetry",
        payload,
        now_ms=now_ms,
        limits=Limits(),
        known_machines={machine},
        known_engineers=(),
        out=batch,
    )
    assert len(batch.readings) == 10
    return batch


async def test_stopping_with_the_database_silent_and_a_full_backlog_returns_promptly(
    database_dsn: str,
) -> None:
    async with database_proxy(database_dsn) as (dsn, proxy):
        pool = await create_pool(dsn, min_size=1, max_size=2, timeout_s=1.0)
        try:
            diagnoser = Diagnoser(pool, Engine(RuleBook.load()), KnowledgeBase.load(), Metrics())
            now_ms = time.time_ns() // 1_000_000
            for _ in range(BATCHES):
                diagnoser.submit(_committed_batch(unique("SD"), now_ms).readings)
            # The database now swallows every byte and answers none: each connection attempt
            # and each query waits out its timeout (1 s here).
            proxy.hold_bulk_bytes = 1
            proxy.cut()
            proxy.restore()
            stop = asyncio.Event()
            stop.set()
            # One batch per timeout would take BATCHES seconds or more; stopping gives up at once.
            await asyncio.wait_for(diagnoser.run(stop), timeout=BATCHES / 2)
            assert diagnoser.idle.is_set()
        finally:
            pool.terminate()
    # Connection attempts and query cancellations that asyncpg gave up on against the silent
    # server leave transports for the garbage collector; collect them here, where they are
    # expected, rather than have their warnings surface in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        await asyncio.sleep(0.1)
        gc.collect()
