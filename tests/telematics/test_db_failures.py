"""What the gateway does when the database refuses, stalls or fails over: nothing is lost, no
batch is wedged, and a refusal costs only the message that caused it.

The refusals are real: triggers in the test database raise the SQLSTATE a real failure would
(read-only after a failover, a data exception, a statement too slow), for machine ids with a
prefix of the test's own, so every other test's rows pass untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from telematics.base.db import (
    Failure,
    _init_connection,  # the staging table
    classify,
    create_pool,
)
from telematics.base.metrics import Metrics
from telematics.ingest.mqtt import MqttEndpoint
from tests.conftest import unique
from tests.telematics.harness import (
    count_readings,
    eventually,
    gateway_config,
    now_ms,
    publish,
    register,
    reject_reasons,
    running_gateway,
)

_TRIGGER = """
CREATE SEQUENCE IF NOT EXISTS test_read_only_hits;
CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.machine_id LIKE 'POISON-%' THEN
        RAISE EXCEPTION 'refused for the test' USING ERRCODE = '22023';
    ELSIF NEW.machine_id LIKE 'RO-%' AND nextval('test_read_only_hits') <= 3 THEN
        RAISE EXCEPTION 'read-only for the test' USING ERRCODE = '25006';
    ELSIF NEW.machine_id LIKE 'SLOW-%' THEN
        PERFORM pg_sleep(0.004);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION test_refuse();
"""


@pytest.fixture
async def refusing(pool: asyncpg.Pool) -> AsyncIterator[None]:
    await pool.execute(_TRIGGER)
    try:
        yield
    finally:
        await pool.execute("DROP TRIGGER test_refuse ON readings; DROP FUNCTION test_refuse()")


def _messages(machine: str, messages: int, per_message: int) -> list[tuple[str, object]]:
    start = now_ms() - 600_000
    return [
        (
            f"machines/{machine}/telemetry",
            {"readings": [{"ts": start + m * per_message + i} for i in range(per_message)]},
        )
        for m in range(messages)
    ]


@pytest.mark.parametrize(
    ("error", "closed", "expected"),
    [
        (asyncpg.ConnectionDoesNotExistError(), False, Failure.TRANSIENT),
        (asyncpg.AdminShutdownError(), False, Failure.TRANSIENT),
        (asyncpg.exceptions.ReadOnlySQLTransactionError(), False, Failure.TRANSIENT),
        (asyncpg.exceptions.DiskFullError(), False, Failure.TRANSIENT),
        (asyncpg.exceptions.SerializationError(), False, Failure.TRANSIENT),
        (asyncpg.exceptions.QueryCanceledError(), False, Failure.TOO_LARGE),
        (asyncpg.exceptions.StatementTooComplexError(), False, Failure.TOO_LARGE),
        (TimeoutError(), False, Failure.TOO_LARGE),
        (ConnectionResetError(), False, Failure.TRANSIENT),
        (asyncpg.InterfaceError("x"), False, Failure.PERMANENT),
        (asyncpg.InterfaceError("x"), True, Failure.TRANSIENT),
        (asyncpg.exceptions.UntranslatableCharacterError(), False, Failure.PERMANENT),
        (asyncpg.exceptions.UniqueViolationError(), False, Failure.PERMANENT),
        (asyncpg.exceptions.InternalServerError(), False, Failure.PERMANENT),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate"), False, Failure.PERMANENT),
    ],
)
def test_database_errors_are_classified_by_sqlstate_and_type(
    error: BaseException, closed: bool, expected: Failure
) -> None:
    assert classify(error, connection_closed=closed) is expected


@pytest.mark.usefixtures("refusing")
async def test_a_refused_message_costs_only_itself(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    poison, good = unique("POISON"), [unique("EX") for _ in range(3)]
    await register(pool, poison, *good)
    messages = [m for machine in good for m in _messages(machine, 4, 10)]
    messages.insert(5, _messages(poison, 1, 10)[0])
    metrics = Metrics()
    config = gateway_config(mqtt_endpoint, batch_max_delay_s=0.5)
    async with running_gateway(pool, config, metrics):
        await publish(mqtt_endpoint, messages)
        assert await eventually(count_readings(pool, *good), 120) == 120
        assert await eventually(reject_reasons(pool, poison), ["store_error"]) == ["store_error"]
    for machine in good:
        assert await reject_reasons(pool, machine)() == []
    detail = await pool.fetchval("SELECT detail FROM ingest_rejects WHERE source_id = $1", poison)
    assert "InvalidParameterValueError" in detail
    assert metrics.batch_splits._value.get() >= 1


@pytest.mark.usefixtures("refusing")
async def test_a_read_only_database_is_waited_out_not_dead_lettered(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    await pool.execute("SELECT setval('test_read_only_hits', 1, false)")
    machine = unique("RO")
    await register(pool, machine)
    metrics = Metrics()
    async with running_gateway(pool, gateway_config(mqtt_endpoint), metrics):
        await publish(mqtt_endpoint, _messages(machine, 3, 10))
        assert await eventually(count_readings(pool, machine), 30) == 30
    assert await reject_reasons(pool, machine)() == []
    assert metrics.db_retries._value.get() >= 1


@pytest.mark.usefixtures("refusing")
async def test_a_batch_past_the_command_timeout_is_split_until_it_fits(
    database_dsn: str, pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("SLOW")
    await register(pool, machine)
    metrics = Metrics()
    slow_pool = await create_pool(database_dsn, max_size=3, timeout_s=1.0)
    config = gateway_config(mqtt_endpoint, batch_max_delay_s=0.5)
    try:
        async with running_gateway(slow_pool, config, metrics):
            # 1,000 rows at 4 ms each: 4 s in one statement, four times the command timeout.
            await publish(mqtt_endpoint, _messages(machine, 20, 50))
            assert await eventually(count_readings(pool, machine), 1000, timeout_s=60) == 1000
    finally:
        await slow_pool.close()
    assert await reject_reasons(pool, machine)() == []
    assert metrics.batch_splits._value.get() >= 2


async def test_a_batch_over_the_readings_cap_is_stored_in_pieces(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    machine = unique("EX")
    await register(pool, machine)
    metrics = Metrics()
    config = gateway_config(mqtt_endpoint, batch_max_delay_s=0.5, batch_max_readings=100)
    async with running_gateway(pool, config, metrics):
        await publish(mqtt_endpoint, _messages(machine, 10, 50))
        assert await eventually(count_readings(pool, machine), 500) == 500
    assert metrics.batch_splits._value.get() >= 3  # 500 readings into pieces of at most 100


async def test_a_connection_that_fails_to_return_to_the_pool_loses_nothing(
    database_dsn: str, pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    failures = [0]

    async def reset(conn: asyncpg.Connection) -> None:
        # Returning a connection after the commit fails, once: the commit must stand.
        if failures[0] == 0:
            failures[0] += 1
            raise asyncpg.InterfaceError("connection broke while being reset")
        await conn.reset()

    machine = unique("EX")
    await register(pool, machine)
    flaky_pool = await asyncpg.create_pool(
        database_dsn, min_size=1, max_size=3, reset=reset, init=_init_connection
    )
    try:
        async with running_gateway(flaky_pool, gateway_config(mqtt_endpoint)) as gateway:
            await publish(mqtt_endpoint, _messages(machine, 1, 10))
            assert await eventually(count_readings(pool, machine), 10) == 10
            await publish(mqtt_endpoint, [(f"machines/{machine}/telemetry", {"ts": now_ms()})])
            assert await eventually(count_readings(pool, machine), 11) == 11
            assert gateway.connected.is_set()
    finally:
        await flaky_pool.close()
    assert failures[0] == 1
    distinct = await pool.fetchval(
        "SELECT count(DISTINCT ts) FROM readings WHERE machine_id = $1", machine
    )
    assert distinct == 11
