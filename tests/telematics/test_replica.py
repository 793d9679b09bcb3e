"""Reads on a streaming replica of a cluster of the test's own; writes, and a writer's own
reads, on the primary; the replica's lag on /metrics.

The replica is a real hot standby (`pg_basebackup -R`): any write sent there fails, so every
read route answering 200 from it shows that the route does not write. Replay is paused to make
the replica visibly behind: a read that went there misses the newest reading.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from telematics.base.config import Settings
from telematics.base.db import create_pool
from telematics.base.metrics import Metrics
from telematics.base.replica import ReadRoute, Replica
from telematics.ingest.pipeline import ingest
from telematics.service import prepare_database
from telematics.store import alarms as alarm_store
from telematics.store.registry import SourceDirectory, add_machine
from telematics.store.tokens import Role, create_token
from telematics.wire.decode import Limits
from tests.conftest import MQTT_URL, unique
from tests.telematics.harness import api_client, now_ms
from tests.telematics.pg_cluster import Cluster, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


@pytest.fixture(scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """(primary pool, replica pool) on a migrated primary and its streaming standby."""
    nodes = Cluster()
    try:
        nodes.start()
        primary = await create_pool(nodes.primary_dsn, max_size=4)
        replica = await create_pool(nodes.standby_dsn, max_size=4, staging=False)
        settings = Settings(
            database_url=nodes.primary_dsn,
            mqtt_url=MQTT_URL,
            admin_token="x",
            data_dir=tmp_path_factory.mktemp("replica"),
        )
        await prepare_database(primary, settings)
        try:
            yield primary, replica
        finally:
            await replica.close()
            await primary.close()
    finally:
        nodes.stop()


async def caught_up(replica: Replica) -> None:
    deadline = time.monotonic() + 20
    while (await replica.probe()).bytes != 0.0:
        assert time.monotonic() < deadline, f"the replica did not catch up: {replica.lag}"


async def store_readings(pool: asyncpg.Pool, machine_id: str, ts_ms: list[int]) -> None:
    payload = orjson.dumps({"readings": [{"ts": t, "engine_speed_rpm": 1500.0} for t in ts_ms]})
    async with pool.acquire() as conn:
        await ingest(
            conn,
            SourceDirectory(),
            [(f"machines/{machine_id}/telemetry", payload)],
            limits=Limits(),
        )


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_reads_go_to_the_replica_and_a_writer_reads_its_own_write(
    cluster: tuple[asyncpg.Pool, asyncpg.Pool], tmp_path: Path
) -> None:
    primary, replica_pool = cluster
    metrics = Metrics()
    replica = Replica(replica_pool, primary, metrics, max_lag_s=30.0)
    reads = ReadRoute(primary, replica, metrics, sticky_s=60.0)
    machine, customer = unique("RM"), unique("RC")
    t0 = now_ms() - 60_000
    async with primary.acquire() as conn:
        await add_machine(conn, machine, "excavator", customer, None)
        _, expert = await create_token(conn, Role.EXPERT, "replica-expert", "t")
        async with conn.transaction():
            (raised,) = await alarm_store.apply_events(
                conn,
                [AlarmEvent(machine, LOW_OIL_PRESSURE, Transition.RAISED, t0)],
                lambda _: (Severity.CRITICAL, "Low oil pressure"),
            )
    await store_readings(primary, machine, [t0 + i * 1000 for i in range(5)])
    await caught_up(replica)
    as_expert = {"Authorization": f"Bearer {expert}"}
    as_admin = {"Authorization": "Bearer test-admin-token"}
    window = {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}
    path = f"/v1/machines/{machine}/readings"

    async def readings(http: object, headers: dict[str, str]) -> int:
        answer = await http.get(path, params=window, headers=headers)  # type: ignore[attr-defined]
        assert answer.status_code == 200, answer.text
        return len(answer.json()["readings"])

    async with api_client(primary, reads=reads, metrics=metrics) as http:
        await replica_pool.execute("SELECT pg_wal_replay_pause()")
        try:
            await store_readings(primary, machine, [t0 + 5000])  # the replica does not have it
            lag = await replica.probe()
            assert lag.bytes is not None
            assert lag.bytes > 0
            shown = (await http.get("/metrics", headers=as_admin)).text
            assert metric(shown, "telematics_db_replica_lag_bytes") == lag.bytes
            assert metric(shown, "telematics_db_replica_lag_seconds") >= 0

            assert await readings(http, as_expert) == 5  # from the replica, behind
            assert await readings(http, {**as_expert, "X-Read-From": "primary"}) == 6
            # Every route that reads through the replica answers from it: none writes.
            for route in (
                f"/v1/machines/{machine}/latest",
                "/v1/alarms",
                f"/v1/machines/{machine}/summary",
                f"/v1/fleet/summary?customer_id={customer}",
                "/aemp/Fleet",
                f"/aemp/Fleet/Equipment/ID/{machine}",
            ):
                answer = await http.get(route, headers=as_expert)
                assert answer.status_code == 200, (route, answer.text)
            on_replica = metric(
                (await http.get("/metrics", headers=as_admin)).text,
                'telematics_db_replica_reads_total{target="replica"}',
            )
            assert on_replica == 7  # the readings, then the six routes

            # A write goes to the primary; the writer's next reads too, so it sees it.
            ack = await http.post(f"/v1/alarms/{raised.alarm_id}/ack", headers=as_expert)
            assert ack.status_code == 200, ack.text
            assert await readings(http, as_expert) == 6
            assert await readings(http, as_admin) == 5  # another caller: the replica still
        finally:
            await replica_pool.execute("SELECT pg_wal_replay_resume()")
        await caught_up(replica)
        assert await readings(http, as_admin) == 6
        assert (await replica.probe()).seconds == 0.0


async def test_a_write_sent_to_the_replica_fails_and_an_unreachable_one_is_not_used(
    cluster: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    primary, replica_pool = cluster
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await replica_pool.execute(
            "INSERT INTO machines (machine_id, machine_class, customer_id) "
            "VALUES ('nope', 'excavator', 'c')"
        )
    metrics = Metrics()
    unreachable = await create_pool(
        "postgresql://postgres@127.0.0.1:1/postgres", min_size=0, staging=False
    )
    try:
        replica = Replica(unreachable, primary, metrics)
        reads = ReadRoute(primary, replica, metrics)
        assert reads.pool_for("expert:x", {}) is primary  # never probed: lag unknown
        await replica.probe()
        assert reads.pool_for("expert:x", {}) is primary
        assert metrics.registry.get_sample_value("telematics_db_replica_lag_seconds") == -1.0
        working = Replica(replica_pool, primary, metrics)
        await working.probe()
        assert ReadRoute(primary, working, metrics).pool_for("expert:x", {}) is replica_pool
    finally:
        await unreachable.close()
