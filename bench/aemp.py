"""AEMP feed benchmark: a fleet snapshot of 10,000 machines, page by page, XML and JSON.

Run by hand (not in CI): `.venv/bin/python -m bench.aemp` (see bench/README.md).

The app (`telematics.web.build_app`, the service's) runs in this process under uvicorn on a free
port, over a fresh database on the PostgreSQL of TELEMATICS_BENCH_DATABASE_URL, with the
service's daily partitions for 30 days of retention and `--readings` readings a machine. httpx
walks over TCP, as a fleet tool would:

* baseline - `GET /v1/machines?limit=100` over the whole fleet (the product's own list: newest
  reading and open alarms per machine), in pages of 100 like the feed's;
* xml      - `GET /aemp/Fleet/{n}` for every page, XML;
* json     - the same with `Accept: application/json`.

Each is walked `--rounds` times, alternating, and the best round of each is reported, with the
feed's time a page as a ratio of the baseline's measured in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import asyncpg
import httpx

from bench.harness import bench_database, serve
from bench.registry_import import AUTH, api_context, fleet_csv, store_readings
from telematics.api.context import ApiContext
from telematics.base.config import Settings
from telematics.base.db import acquire, create_pool
from telematics.web import build_app


def feed_context(pool: asyncpg.Pool) -> ApiContext:
    """The service's context on `pool`, the AEMP rate limit out of the way."""
    return replace(api_context(pool), settings=Settings(aemp_burst=100_000, aemp_rate_per_s=10_000))


async def baseline(http: httpx.AsyncClient) -> int:
    pages, after = 0, None
    while True:
        params: dict[str, str | int] = {"limit": 100, **({"after": after} if after else {})}
        answer = await http.get("/v1/machines", params=params, headers=AUTH)
        if answer.status_code != 200:
            raise SystemExit(f"list refused: {answer.status_code} {answer.text[:300]}")
        pages += 1
        after = answer.json()["next_after"]
        if after is None:
            return pages


def feed(accept: str) -> Callable[[httpx.AsyncClient], Awaitable[int]]:
    async def walk(http: httpx.AsyncClient) -> int:
        page, machines = 1, 0
        while True:
            answer = await http.get(f"/aemp/Fleet/{page}", headers={**AUTH, "Accept": accept})
            if answer.status_code != 200:
                raise SystemExit(f"feed refused: {answer.status_code} {answer.text[:300]}")
            if accept == "application/json":
                body = answer.json()
                machines += len(body["Equipment"])
                more = any(link["rel"] == "next" for link in body["Links"])
            else:
                machines += answer.content.count(b"<Equipment>")
                more = b"<rel>next</rel>" in answer.content
            if not more:
                return page if machines else 0
            page += 1

    return walk


async def main_async(args: argparse.Namespace) -> None:
    async with bench_database("bench_registry") as dsn:
        pool = await create_pool(dsn, max_size=4)
        try:
            async with (
                serve(build_app(feed_context(pool))) as url,
                httpx.AsyncClient(base_url=url, timeout=300.0) as http,
            ):
                answer = await http.post(
                    "/v1/import/machines",
                    content=fleet_csv(args.machines, "FLEET"),
                    headers={**AUTH, "Content-Type": "text/csv"},
                )
                if answer.status_code != 200:
                    raise SystemExit(f"import refused: {answer.text[:300]}")
                async with acquire(pool) as conn:
                    await store_readings(conn, args.readings)
                walks = {
                    "baseline": baseline,
                    "xml": feed("application/xml"),
                    "json": feed("application/json"),
                }
                best: dict[str, tuple[float, int]] = {}
                for _ in range(args.rounds):
                    for name, walk in walks.items():
                        started = time.monotonic()
                        pages = await walk(http)
                        elapsed = time.monotonic() - started
                        if name not in best or elapsed < best[name][0]:
                            best[name] = (elapsed, pages)
        finally:
            await pool.close()
    print(f"{args.machines:,} machines, {args.readings} readings each, best of {args.rounds}")
    base_s, base_pages = best["baseline"]
    for name, (elapsed, pages) in best.items():
        per_page_ms = elapsed / pages * 1000
        ratio = per_page_ms / (base_s / base_pages * 1000)
        print(
            f"{name:9s} {elapsed:6.2f} s  {pages} pages of 100  {per_page_ms:6.1f} ms a page"
            f"  {ratio:4.2f} x baseline"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--readings", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
