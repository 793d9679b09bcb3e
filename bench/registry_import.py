"""Registry import benchmark: a fleet of 100,000 machines through `POST /v1/import/machines`.

Run by hand (not in CI): `.venv/bin/python -m bench.registry_import` (see bench/README.md).

The API runs in this process under uvicorn on a free port, over a fresh database on the
PostgreSQL of TELEMATICS_BENCH_DATABASE_URL; the client posts the CSV over TCP with httpx, as an
operator's script would. Measured, each from the request to the answer:

* import  - a CSV of `--machines` machines, every column filled, into an empty registry;
* again   - the same file once more: every machine is updated;
* one-by-one - the baseline: `POST /v1/machines` per machine for `--sample` machines (as the
  simulator registers), its rate extrapolated to the fleet;
* list    - with the service's daily partitions for 30 days of retention (34 of them) and each
  machine's readings of the last hour stored (`--readings` a machine), `GET /v1/machines` over
  the whole fleet in pages of 1,000, with each machine's newest reading and open alarms.

The machines in the registry are counted afterwards, and the import's figure is held against the
target of one minute.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import httpx

from bench.harness import bench_database, serve
from telematics.api.app import create_app
from telematics.api.context import ApiContext
from telematics.base.db import acquire, create_pool
from telematics.base.metrics import Metrics
from telematics.store import partitions
from telematics.store.registry import SourceDirectory
from telematics.wire.decode import Limits

TOKEN = "bench-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TARGET_S = 60.0
KINDS = [
    ("SY215C", "excavator", 400.0),
    ("SY365H", "excavator", 620.0),
    ("SY5419THB 56E", "pump_truck", 400.0),
    ("STC500", "crane", 300.0),
    ("PC200-8", "excavator", 400.0),
    ("320 GC", "excavator", 345.0),
]
HEADER = (
    "machine_id,model,machine_class,customer_id,oem,serial_number,fuel_tank_l,delivered_at,"
    "name,site_lat,site_lon,site_radius_m"
)


def fleet_csv(count: int, prefix: str) -> bytes:
    """A CSV of `count` machines with every column filled."""
    lines = [HEADER]
    for i in range(count):
        model, machine_class, tank = KINDS[i % len(KINDS)]
        oem = "Komatsu" if model.startswith("PC") else "Caterpillar" if model[0] == "3" else "SANY"
        lines.append(
            f"{prefix}-{i:07d},{model},{machine_class},CUST-{i % 5000:05d},{oem},"
            f"PIN{i:014d},{tank},2024-{i % 12 + 1:02d}-{i % 28 + 1:02d},"
            f"Machine {i},{30 + (i % 1000) / 1000:.6f},{120 + (i % 997) / 997:.6f},500"
        )
    return ("\n".join(lines) + "\n").encode()


def api_context(pool: asyncpg.Pool) -> ApiContext:
    """The API's context on `pool`, admin token `TOKEN`."""
    return ApiContext(
        pool=pool,
        directory=SourceDirectory(),
        metrics=Metrics(),
        admin_token=TOKEN,
        limits=Limits(),
    )


async def timed_import(http: httpx.AsyncClient, body: bytes) -> tuple[float, dict[str, object]]:
    """Seconds from the request to the answer, and the answer."""
    started = time.monotonic()
    answer = await http.post(
        "/v1/import/machines", content=body, headers={**AUTH, "Content-Type": "text/csv"}
    )
    elapsed = time.monotonic() - started
    if answer.status_code != 200:
        raise SystemExit(f"import refused: {answer.status_code} {answer.text[:500]}")
    doc: dict[str, object] = answer.json()
    return elapsed, doc


async def one_by_one(http: httpx.AsyncClient, count: int) -> float:
    """Seconds to register `count` machines with one `POST /v1/machines` each."""
    started = time.monotonic()
    for i in range(count):
        body = {
            "machine_id": f"ONE-{i:07d}",
            "model": "SY215C",
            "machine_class": "excavator",
            "customer_id": "CUST-ONE",
        }
        answer = await http.post("/v1/machines", json=body, headers=AUTH)
        if answer.status_code != 201:
            raise SystemExit(f"registration refused: {answer.status_code} {answer.text[:300]}")
    return time.monotonic() - started


async def store_readings(conn: asyncpg.Connection, per_machine: int) -> None:
    """Partitions as the service keeps them, and readings of the last hour for every machine."""
    await partitions.upkeep(conn, today=datetime.now(UTC).date(), retention_days=30, ahead_days=3)
    await conn.execute(
        """INSERT INTO readings (machine_id, ts, engine_speed_rpm, engine_hours, lat, lon)
           SELECT machine_id, date_trunc('second', now()) - k * interval '1 minute', 1800,
                  1000 + k, 30.5, 120.5
           FROM machines, generate_series(1, $1) AS k""",
        per_machine,
    )
    await conn.execute("ANALYZE machines, readings")


async def list_fleet(http: httpx.AsyncClient) -> tuple[int, float]:
    """Every machine, page by page: (pages, seconds)."""
    started, pages, after = time.monotonic(), 0, None
    while True:
        params: dict[str, str | int] = {"limit": 1000, **({"after": after} if after else {})}
        answer = await http.get("/v1/machines", params=params, headers=AUTH)
        if answer.status_code != 200:
            raise SystemExit(f"list refused: {answer.status_code} {answer.text[:300]}")
        page = answer.json()
        pages += 1
        after = page["next_after"]
        if after is None:
            return pages, time.monotonic() - started


async def main_async(args: argparse.Namespace) -> None:
    body = fleet_csv(args.machines, "FLEET")
    print(f"CSV of {args.machines:,} machines: {len(body) / 1e6:.1f} MB", flush=True)
    async with bench_database("bench_registry") as dsn:
        pool = await create_pool(dsn, max_size=4)
        try:
            async with (
                serve(create_app(api_context(pool))) as url,
                httpx.AsyncClient(base_url=url, timeout=300.0) as http,
            ):
                first_s, first = await timed_import(http, body)
                again_s, again = await timed_import(http, body)
                sample_s = await one_by_one(http, args.sample)
                async with acquire(pool) as conn:
                    await store_readings(conn, args.readings)
                pages, list_s = await list_fleet(http)
            async with acquire(pool) as conn:
                stored = await conn.fetchval(
                    "SELECT count(*) FROM machines WHERE machine_id LIKE 'FLEET-%'"
                )
        finally:
            await pool.close()
    assert first["created"] == args.machines
    assert again["updated"] == args.machines
    assert stored == args.machines, stored
    per_s = args.sample / sample_s
    print(f"import:     {first_s:6.2f} s  {args.machines / first_s:9,.0f} machines/s  (created)")
    print(f"again:      {again_s:6.2f} s  {args.machines / again_s:9,.0f} machines/s  (updated)")
    print(
        f"one-by-one: {args.machines / per_s:6.1f} s  {per_s:9,.0f} machines/s  "
        f"(POST /v1/machines x {args.sample:,}, extrapolated)"
    )
    print(f"import is {args.machines / first_s / per_s:.0f}x one-by-one registration")
    print(
        f"list:       {list_s:6.2f} s  {pages} pages of 1,000 with status, "
        f"{list_s / pages * 1000:.0f} ms a page ({args.readings} readings a machine stored)"
    )
    verdict = "within" if first_s < TARGET_S else "OVER"
    print(f"{args.machines:,} machines in {first_s:.1f} s: {verdict} the {TARGET_S:.0f} s target")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--machines", type=int, default=100_000)
    p.add_argument("--sample", type=int, default=2_000, help="machines registered one by one")
    p.add_argument("--readings", type=int, default=10, help="readings stored a machine, for list")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
