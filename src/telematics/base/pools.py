"""The service's database pools: one per kind of work, and the read route to a replica.

Part of the composition root's wiring (`telematics.service`), kept apart so that tools and
benchmarks open the same pools the service does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import asyncpg

from telematics.base.config import Settings
from telematics.base.db import create_pool, with_retry
from telematics.base.metrics import Metrics
from telematics.base.replica import ReadRoute, Replica


@dataclass(frozen=True, slots=True)
class Pools:
    """One pool for each kind of work, so that no amount of one can starve another.

    Attributes:
        ingest: The gateway's writers and its source lookups.
        api: HTTP requests, token lookups included.
        jobs: Migrations, diagnosis, SLA timers and partition upkeep.
        replica: The API's reads that may lag, on the read replica; None without one.
    """

    ingest: asyncpg.Pool
    api: asyncpg.Pool
    jobs: asyncpg.Pool
    replica: asyncpg.Pool | None = None


@asynccontextmanager
async def open_pools(
    dsn: str, settings: Settings, stop: asyncio.Event | None = None
) -> AsyncIterator[Pools]:
    """Open the three pools of `settings` (waiting for the database), and close them after."""
    async with AsyncExitStack() as stack:

        async def opened(size: int, url: str = dsn, *, staging: bool = True) -> asyncpg.Pool:
            pool = await with_retry(
                lambda: create_pool(
                    url, max_size=size, timeout_s=settings.db_timeout_s, staging=staging
                ),
                what="database connection",
                stop=stop,
            )
            stack.push_async_callback(pool.close)
            return pool

        replica_url = settings.database_replica_url
        yield Pools(
            ingest=await opened(settings.db_ingest_pool_size),
            api=await opened(settings.db_api_pool_size),
            jobs=await opened(settings.db_jobs_pool_size),
            replica=None
            if replica_url is None
            else await opened(
                settings.db_replica_pool_size, replica_url.get_secret_value(), staging=False
            ),
        )


def read_route(settings: Settings, pools: Pools, metrics: Metrics) -> ReadRoute | None:
    """Where the API's lagging reads go: the replica's pool when one is configured."""
    if pools.replica is None:
        return None
    replica = Replica(
        pools.replica, pools.api, metrics, max_lag_s=settings.database_replica_max_lag_s
    )
    return ReadRoute(pools.api, replica, metrics, sticky_s=settings.database_replica_sticky_s)


async def watch_replica(reads: ReadRoute | None, stop: asyncio.Event) -> None:
    """Follow the replica's lag until `stop` (nothing without a replica)."""
    if reads is not None and reads.replica is not None:
        await reads.replica.run(stop)
