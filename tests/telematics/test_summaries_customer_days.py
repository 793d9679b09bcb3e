"""Customer day rows (migration 016): a fleet's buckets from them equal the sum of its machines'.

The fleet answer's per-bucket totals and 24-hour map come from `summary_customer_days`; these
tests hold them to what the machine day rows of the customer's machines sum to (the answer
before that table existed), after increments, after a late batch is recomputed, after a machine
moves to another customer (in another zone, by `UPDATE` and by the registry import), and after a
tank size changes.
"""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import pytest

from diagnosis.rules import RuleBook
from telematics.store.machine_import import upsert_machines
from telematics.store.registry import MachineRecord, add_machine
from telematics.summaries import queries
from telematics.summaries.periods import Period, buckets, zone
from telematics.summaries.rollup import Rollup
from telematics.summaries.settings import CustomerSettings, put_settings
from tests.conftest import unique
from tests.telematics.test_summaries_rollup import feed, script, start


async def fleet_buckets(
    pool: asyncpg.Pool, customer: str, tz: str, *, from_machines: bool
) -> list[queries.Totals]:
    """The fleet's day buckets around the script, from the customer rows or the machine rows."""
    today = date.today()
    bs = buckets(today - timedelta(days=2), today + timedelta(days=1), Period.DAY, zone(tz))
    totals = [queries.Totals() for _ in bs]
    args: list[object] = [customer, bs[0].first, bs[-1].first, "day"]
    async with pool.acquire() as conn:
        if from_machines:  # the answer before customer rows: every machine row, with the map
            source = queries._FROM_DAYS.format(scope="m.customer_id = $1")
            fuel = queries._FUEL_L
            await queries._buckets(conn, source, fuel, args, [b.first for b in bs], totals)
        else:
            found = await queries.summarise(
                conn, queries.Scope(customer_id=customer), Period.DAY, tz, True, bs, True
            )
            totals = found.buckets
    return totals


def flat(totals: list[queries.Totals]) -> tuple[list[float], list[object]]:
    """The figures of each bucket: the sums, and what must match exactly (nulls, times)."""
    sums: list[float] = []
    exact: list[object] = []
    for t in totals:
        sums += [*t.values.values(), t.fuel_used_l or 0.0, *t.working_by_hour]
        exact += [t.fuel_used_l is None, t.first_start, t.last_stop]
    return sums, exact


async def assert_fleet_is_sum_of_machines(
    pool: asyncpg.Pool, customer: str, tz: str, *, empty: bool = False
) -> None:
    want_sums, want_exact = flat(await fleet_buckets(pool, customer, tz, from_machines=True))
    got_sums, got_exact = flat(await fleet_buckets(pool, customer, tz, from_machines=False))
    assert got_exact == want_exact
    assert got_sums == pytest.approx(want_sums, rel=1e-9, abs=1e-9)
    assert any(want_sums) != empty


async def known_s(pool: asyncpg.Pool, customer: str) -> float:
    value = await pool.fetchval(
        "SELECT sum(known_s) FROM summary_customer_days WHERE customer_id = $1", customer
    )
    return float(value or 0.0)


async def test_customer_days_follow_increments_late_batches_moves_and_tanks(
    pool: asyncpg.Pool,
) -> None:
    east, west = unique("CE"), unique("CW")
    m1, m2, m3 = unique("CD"), unique("CD"), unique("CD")
    async with pool.acquire() as conn:
        await add_machine(conn, m1, "excavator", east, None, fuel_tank_l=400.0)
        await add_machine(conn, m2, "excavator", east, None)  # no tank: no litres
        await add_machine(conn, m3, "excavator", west, None, fuel_tank_l=250.0)
        await put_settings(conn, CustomerSettings(east, "Asia/Shanghai"))
    rows = script(start())
    rollup = Rollup(pool, RuleBook.load())
    for lo in range(0, len(rows), 90):
        await feed(pool, rollup, m1, rows[lo : lo + 90])
        await feed(pool, rollup, m3, rows[lo : lo + 90])
    late = rows[100:160]
    await feed(pool, rollup, m2, rows[:100] + rows[160:])
    await assert_fleet_is_sum_of_machines(pool, east, "Asia/Shanghai")
    await assert_fleet_is_sum_of_machines(pool, west, "UTC")

    before = await known_s(pool, east)
    await feed(pool, rollup, m2, late)  # an hour sent late: recomputed
    assert rollup.recomputed == 1
    assert await known_s(pool, east) > before
    await assert_fleet_is_sum_of_machines(pool, east, "Asia/Shanghai")

    # A machine moves to a customer in another zone: its history goes with it, its day rows are
    # rebuilt in the new zone, and both customers' days follow.
    west_alone = await known_s(pool, west)
    assert west_alone > 0
    after_late = await known_s(pool, east)
    await pool.execute("UPDATE machines SET customer_id = $2 WHERE machine_id = $1", m3, east)
    assert await known_s(pool, west) == 0.0
    assert await known_s(pool, east) == pytest.approx(after_late + west_alone)
    await assert_fleet_is_sum_of_machines(pool, east, "Asia/Shanghai")
    await assert_fleet_is_sum_of_machines(pool, west, "UTC", empty=True)

    # The registry import moves it back (INSERT .. ON CONFLICT DO UPDATE), and a tank changes.
    async with pool.acquire() as conn, conn.transaction():
        record = MachineRecord(m3, "excavator", west, fuel_tank_l=250.0)
        await upsert_machines(conn, [record], {"machine_id", "model", "customer_id"})
    assert await known_s(pool, west) == pytest.approx(west_alone)
    await pool.execute("UPDATE machines SET fuel_tank_l = 800 WHERE machine_id = $1", m1)
    await assert_fleet_is_sum_of_machines(pool, east, "Asia/Shanghai")
    await assert_fleet_is_sum_of_machines(pool, west, "UTC")
    # A zone change rebuilds the customer's days in the new zone.
    async with pool.acquire() as conn:
        await put_settings(conn, CustomerSettings(east, "Asia/Kathmandu"))
    await assert_fleet_is_sum_of_machines(pool, east, "Asia/Kathmandu")
