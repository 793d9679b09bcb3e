"""Work-summary benchmark: the rollup's cost per reading, and the fleet month query.

Run by hand (not in CI): `.venv/bin/python -m bench.summaries` (see bench/README.md).

Over a fresh database on the PostgreSQL of TELEMATICS_BENCH_DATABASE_URL:

* rollup - the fleet simulator's readings for `--machines` machines, 20 a machine per message
  and `--messages` messages per batch (the gateway's batches), are written the way the gateway
  writes them (`ingest.pipeline.ingest`: decode, COPY, INSERT .. ON CONFLICT, commit) and then
  handed to the rollup consumer (`summaries.rollup.Rollup.consume`), batch by batch, back to
  back in one process. Both are timed per batch; the figure is the rollup's time as a share of
  the write's (and of the gateway's whole cost per reading in bench/README.md, 8.47 us).
* query - 1,000 machines of one customer with 30 days of day rows (and `--slots-per-day` slot
  rows a day each, inserted with generate_series), then `GET /v1/fleet/summary` for the month
  over the HTTP app in-process (httpx ASGITransport): in the customer's zone (day rows) and in
  another zone (slots). p50 and p95 of `--repeat` requests each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, date, datetime, timedelta

import asyncpg
import httpx

from bench.harness import bench_database
from diagnosis.rules import RuleBook
from simulators.fleet import Fleet
from simulators.machines import make_fleet
from simulators.wire import encode_batch, frame_rows
from telematics.api.context import ApiContext
from telematics.base.db import acquire, create_pool
from telematics.base.metrics import Metrics
from telematics.ingest.pipeline import ingest
from telematics.services.diagnose import frame_of
from telematics.store.registry import SourceDirectory
from telematics.summaries.rollup import Rollup
from telematics.web import build_app
from telematics.wire.decode import Limits

TOKEN = "bench-admin-token"
GATEWAY_US = 8.47  # bench/README.md: the gateway's whole cost per reading, batched


async def bench_rollup(pool: asyncpg.Pool, args: argparse.Namespace) -> None:
    machines = make_fleet(args.machines, id_prefix="BR", seed=1)
    await pool.executemany(
        "INSERT INTO machines (machine_id, model, customer_id, machine_class, fuel_tank_l)"
        " VALUES ($1, $2, $3, $4, 400)",
        [(m.machine_id, m.model, m.customer_id, m.model) for m in machines],
    )
    per_message = 20
    start = int(time.time() * 1000) - 3 * 3600_000
    fleet = Fleet(machines, seed=2, start_ts_ms=start)
    rollup = Rollup(pool, RuleBook.load())
    directory = SourceDirectory()
    write_s: list[float] = []
    roll_s: list[float] = []
    flush_s: list[float] = []
    readings = 0
    step = 0
    for batch_no in range(args.batches + 1):  # batch 0 warms up
        rows_by_machine: dict[str, list[dict[str, object]]] = {m.machine_id: [] for m in machines}
        for _ in range(per_message):
            step += 1
            frame = fleet.step(start + step * 1000)
            for spec, row in zip(machines, frame_rows(frame), strict=True):
                rows_by_machine[spec.machine_id].append(row)
        messages = [(m.topic, encode_batch(rows_by_machine[m.machine_id])) for m in machines]
        async with acquire(pool) as conn:
            began = time.perf_counter()
            decoded, _ = await ingest(conn, directory, messages, limits=Limits())
            wrote = time.perf_counter() - began
        batch_frame = frame_of(decoded.readings)  # the diagnoser builds it for the engine
        began = time.perf_counter()
        await rollup.consume(batch_frame)
        consumed = time.perf_counter()
        if batch_no % args.flush_every == 0:
            await rollup.flush()
        rolled = time.perf_counter() - began
        if batch_no == 0:
            continue  # warm-up: first sight of every machine
        write_s.append(wrote)
        roll_s.append(rolled)
        flush_s.append(began + rolled - consumed)
        readings += len(decoded.readings)
    w_us, r_us = sum(write_s) / readings * 1e6, sum(roll_s) / readings * 1e6
    print(
        f"rollup: {args.machines} machines, {per_message} readings a message, "
        f"{len(machines)} messages a batch, {len(write_s)} batches, {readings:,} readings"
    )
    print(
        f"  write (gateway's store path)  {w_us:6.2f} us/reading   "
        f"median batch {statistics.median(write_s) * 1000:7.1f} ms"
    )
    print(
        f"  rollup consumer               {r_us:6.2f} us/reading   "
        f"median batch {statistics.median(roll_s) * 1000:7.1f} ms"
    )
    print(
        f"    of which flushes            {sum(flush_s) / readings * 1e6:6.2f} us/reading"
        f"   (every {args.flush_every} batches)"
    )
    print(
        f"  rollup / write = {r_us / w_us:.1%};  rollup / gateway's {GATEWAY_US} us = "
        f"{r_us / GATEWAY_US:.1%}  (goal < 10%)   recomputes: {rollup.recomputed}"
    )


async def seed_summaries(pool: asyncpg.Pool, machines: int, days: int, slots: int) -> str:
    customer = "BENCH-FLEET"
    first = date.today() - timedelta(days=days)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO machines (machine_id, model, customer_id, machine_class, fuel_tank_l)"
            " SELECT 'BQ-' || lpad(i::text, 5, '0'), 'SY215C', $1, 'excavator', 400"
            " FROM generate_series(1, $2) i",
            customer,
            machines,
        )
        await conn.execute("INSERT INTO customer_settings (customer_id) VALUES ($1)", customer)
        began = time.perf_counter()
        await conn.execute(
            "INSERT INTO summary_days (machine_id, day, known_s, working_s, idle_s, engine_h,"
            " fuel_used_pct, refuel_pct, distance_m, meter_anomalies, first_start, last_stop,"
            " working_by_hour) SELECT m.machine_id, d::date, 36000, 25000, 8000, 9.2, 30, 0,"
            " 1200, 0, d + interval '7 hours', d + interval '17 hours',"
            " array_fill(2500::float8, ARRAY[24])"
            " FROM machines m,"
            " generate_series($2::date, $2::date + ($3::int - 1), interval '1 day') d"
            " WHERE m.customer_id = $1",
            customer,
            first,
            days,
            timeout=900,
        )
        # The customer's day rows (migration 016), as the rollup keeps them with the days.
        await conn.execute(
            "SELECT summary_rebuild_customer_days(ARRAY[$1], ARRAY[$2::date],"
            " ARRAY[$2::date + $3::int])",
            customer,
            first,
            days,
        )
        await conn.execute(
            "INSERT INTO summary_slots (machine_id, slot, known_s, working_s, idle_s, engine_h,"
            " fuel_used_pct, refuel_pct, distance_m, meter_anomalies, first_start, last_stop)"
            " SELECT m.machine_id, d + interval '6 hours' + s * interval '15 minutes', 900, 625,"
            " 200, 0.23, 0.75, 0, 30, 0, NULL, NULL FROM machines m,"
            " generate_series($2::timestamptz, $2::timestamptz + ($3::int - 1) * interval '1 day',"
            " interval '1 day') d, generate_series(0, $4::int - 1) s WHERE m.customer_id = $1",
            customer,
            datetime.combine(first, datetime.min.time(), UTC),
            days,
            slots,
            timeout=900,
        )
        await conn.execute(
            "ANALYZE summary_days; ANALYZE summary_customer_days; ANALYZE summary_slots;"
            " ANALYZE machines"
        )
        print(
            f"query: seeded {machines} machines x {days} days ({slots} slots a day) in "
            f"{time.perf_counter() - began:.1f} s"
        )
    return customer


async def bench_query(pool: asyncpg.Pool, args: argparse.Namespace) -> None:
    days = 30
    customer = await seed_summaries(pool, args.fleet, days, args.slots_per_day)
    app = build_app(
        ApiContext(
            pool=pool,
            directory=SourceDirectory(),
            metrics=Metrics(),
            admin_token=TOKEN,
            limits=Limits(),
        )
    )
    last = date.today() - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        for label, extra in (
            ("day rows (customer's zone)", {}),
            ("slots (Asia/Tokyo)", {"tz": "Asia/Tokyo"}),
        ):
            params = {
                "customer_id": customer,
                "period": "day",
                "from": first.isoformat(),
                "to": last.isoformat(),
                **extra,
            }
            times = []
            for i in range(args.repeat + 2):
                began = time.perf_counter()
                answer = await http.get(
                    "/v1/fleet/summary", params=params, headers={"Authorization": f"Bearer {TOKEN}"}
                )
                elapsed = time.perf_counter() - began
                assert answer.status_code == 200, answer.text
                assert len(answer.json()["per_machine"]) == args.fleet
                if i >= 2:
                    times.append(elapsed)
            times.sort()
            p95 = times[max(0, round(0.95 * len(times)) - 1)]
            print(
                f"  fleet month, {label:28s} p50 {statistics.median(times) * 1000:7.1f} ms"
                f"   p95 {p95 * 1000:7.1f} ms   ({len(times)} requests, goal p95 < 200 ms"
                f" for day rows)"
            )


async def main_async(args: argparse.Namespace) -> None:
    async with bench_database("bench_summaries") as dsn:
        pool = await create_pool(dsn, max_size=4)
        try:
            if args.batches:
                await bench_rollup(pool, args)
            if args.repeat:
                await bench_query(pool, args)
        finally:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000, help="machines in the rollup run")
    parser.add_argument("--batches", type=int, default=30, help="timed batches (0: skip)")
    parser.add_argument(
        "--flush-every",
        type=int,
        default=15,
        help="batches per rollup flush (the product's: every TELEMATICS_SUMMARY_FLUSH_S = 10 s"
        " or 300,000 readings, whichever first: 15 batches of 20,000 at the gateway's rate)",
    )
    parser.add_argument("--fleet", type=int, default=1000, help="machines in the query run")
    parser.add_argument("--slots-per-day", type=int, default=40, help="slot rows a machine-day")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests (0: skip)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
