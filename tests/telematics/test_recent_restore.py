"""The restore of recently active machines after a start (`telematics.services.recent`): as of
when they were found, however late a chunk runs, and kept through a database outage."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from diagnosis.engine import Engine
from diagnosis.rules import RuleBook
from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.services import recent
from telematics.services.recent import RecentMachines
from telematics.store.registry import Site, add_machine
from tests.conftest import unique
from tests.diagnosis.test_engine import SITE
from tests.proxy import database_proxy
from tests.telematics.test_diagnosis_durable import _now_ms, _readings, _store


async def _quiet_machine(pool: asyncpg.Pool, last_ms: int) -> str:
    machine = unique("RQ")
    async with pool.acquire() as conn:
        await add_machine(conn, machine, "excavator", "C-recent", Site(*SITE))
    await _store(pool, machine, _readings(last_ms - 4_000, 5), None)  # its last at `last_ms`
    return machine


def _last(engine: Engine, machine: str) -> int | None:
    return engine.last_ts_ms([machine]).get(machine)


async def test_a_late_chunk_restores_as_of_when_the_machines_were_found(
    pool: asyncpg.Pool,
) -> None:
    last_ms = _now_ms() - 1_500
    machine = await _quiet_machine(pool, last_ms)
    engine = Engine(RuleBook.load())
    found = RecentMachines(pool, engine, Metrics(), chunk=100_000)
    await found.find(history_s=4.0)  # its readings lie 1.5-5.5 s back: the last ones inside
    assert found.left >= 1
    # Live traffic held the restore back; by now the last 4 s hold none of its readings.
    await asyncio.sleep(3.0)
    await found.restore_some()
    assert found.done.is_set()
    assert _last(engine, machine) == last_ms


async def test_a_chunk_the_database_fails_stays_queued_and_is_tried_again(
    database_dsn: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recent, "RETRY_S", 0.5)
    machine = await _quiet_machine(pool, _now_ms() - 1_000)
    async with database_proxy(database_dsn) as (dsn, proxy):
        proxied = await create_pool(dsn, min_size=0, max_size=1, timeout_s=1.0)
        try:
            engine = Engine(RuleBook.load())
            found = RecentMachines(proxied, engine, Metrics(), chunk=100_000)
            await found.find(history_s=60.0)
            left = found.left
            assert left >= 1
            proxy.cut()
            await proxied.expire_connections()
            await found.restore_some()  # the database is away
            assert (found.left, found.done.is_set(), found.due()) == (left, False, False)
            assert engine.unknown([machine]) == [machine]
            proxy.restore()
            await asyncio.sleep(0.6)  # past RETRY_S
            assert found.due()
            await found.restore_some()
            assert found.done.is_set()
            assert engine.unknown([machine]) == []
        finally:
            await proxied.close()
