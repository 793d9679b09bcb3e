"""Test harness: the real PostgreSQL and Mosquitto, a throwaway database per session.

The session fixture checks that both services answer and fails loudly if not, creates a fresh
database, runs the real migrations in it, and drops it at the end. Tests isolate themselves by
unique machine ids, topics and MQTT client ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from telematics.base import embedded
from telematics.base.config import Settings
from telematics.base.db import create_pool
from telematics.ingest.mqtt import MqttEndpoint, parse_mqtt_url
from telematics.service import prepare_database

ADMIN_DSN = os.environ.get(
    "TELEMATICS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MQTT_URL = os.environ.get("TELEMATICS_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


def unique(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="module")
async def private_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The URL of a Mosquitto of the module's own, configured as the service's embedded broker
    (persistent sessions, deep queues): for tests that kill a gateway and count every reading,
    whose offline session must not share the stock broker's 1,000-message queue with the
    messages of every other suite."""
    found = embedded.find_mosquitto()
    if found is None:
        pytest.fail("Mosquitto is not installed")
    broker = embedded.EmbeddedBroker(tmp_path_factory.mktemp("broker"), found)
    await broker.start()
    try:
        yield broker.url
    finally:
        await broker.stop()


@pytest.fixture(scope="session")
def mqtt_endpoint() -> MqttEndpoint:
    endpoint = parse_mqtt_url(MQTT_URL)
    try:
        socket.create_connection((endpoint.host, endpoint.port), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"MQTT broker not answering at {MQTT_URL}: {exc}. Start Mosquitto first.")
    return endpoint


@contextlib.asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """The DSN of a new, empty database on the test server, dropped afterwards."""
    try:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL not answering at {ADMIN_DSN}: {exc}. Start PostgreSQL first.")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_database(ADMIN_DSN, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture(scope="session")
async def database_dsn() -> AsyncIterator[str]:
    async with fresh_database("telematics_test") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def settings(database_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_dsn,
        mqtt_url=MQTT_URL,
        admin_token="test-admin-token",
        data_dir=tmp_path_factory.mktemp("data"),
    )


@pytest.fixture(scope="session")
async def pool(database_dsn: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_dsn, max_size=6)
    await prepare_database(pool, settings)
    try:
        yield pool
    finally:
        await asyncio.wait_for(pool.close(), 10)
