"""Fleets, readings and AEMP clients for the AEMP tests, written with plain SQL."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.telematics.harness import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NS = "http://standards.iso.org/iso/15143/-3"


@dataclass(frozen=True)
class Latest:
    """What a machine's newest reading carries."""

    ts: datetime
    lat: float | None
    lon: float | None
    engine_hours: float | None
    fuel_level_pct: float | None
    engine_speed_rpm: float | None


def utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def seed_fleet(
    pool: asyncpg.Pool, customer_id: str, prefix: str, count: int
) -> dict[str, Latest]:
    """`count` machines of `customer_id`, each with an older reading and a newest one whose
    values differ per machine (machine i: engine running when i is even, no position when i
    is a multiple of 7, the last machine without readings at all).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    machines, readings = [], []
    latest: dict[str, Latest] = {}
    for i in range(count):
        machine_id = f"{prefix}-{i:04d}"
        machines.append(
            (machine_id, f"PC{200 + i % 5}-8", customer_id, "Komatsu", f"SN{i:06d}", 400.0 + i)
        )
        if i == count - 1:
            continue
        old = now - timedelta(hours=3, seconds=i)
        new = now - timedelta(minutes=5, seconds=i)
        readings.append((machine_id, old, 1.0, 2.0, 1.0, 1.0, 0.0))
        lat = None if i % 7 == 0 else 30.0 + i / 1000
        lon = None if i % 7 == 0 else 120.0 + i / 1000
        value = Latest(
            new, lat, lon, 1000.0 + i + 0.25, (i % 100) + 0.5, 1500.0 if i % 2 == 0 else 0.0
        )
        readings.append(
            (
                machine_id,
                new,
                lat,
                lon,
                value.engine_hours,
                value.fuel_level_pct,
                value.engine_speed_rpm,
            )
        )
        latest[machine_id] = value
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO machines (machine_id, model, customer_id, oem, serial_number, "
            "fuel_tank_l) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            machines,
        )
        await conn.executemany(
            "INSERT INTO readings (machine_id, ts, lat, lon, engine_hours, fuel_level_pct, "
            "engine_speed_rpm) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            readings,
        )
    return latest


async def issue_client(http: httpx.AsyncClient, customer_id: str) -> tuple[str, str]:
    """A new AEMP client of `customer_id`, through the admin API: (client_id, secret)."""
    answer = await http.post("/v1/aemp/clients", json={"customer_id": customer_id}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["client_id"], body["client_secret"]


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def access_token(http: httpx.AsyncClient, customer_id: str) -> dict[str, str]:
    """Bearer headers of a fresh client of `customer_id` (client credentials, HTTP Basic)."""
    client_id, secret = await issue_client(http, customer_id)
    answer = await http.post(
        "/aemp/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}
