"""Migration 008 on a database that already holds machines and anomaly models of before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from telematics.base.migrate import migrate, packaged_migrations
from tests.conftest import ADMIN_DSN, _with_database

REGISTRY = "008_registry"


@pytest.fixture
async def fresh() -> AsyncIterator[asyncpg.Connection]:
    admin = await asyncpg.connect(ADMIN_DSN, timeout=5)
    name = f"telematics_mig_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(_with_database(ADMIN_DSN, name), timeout=5)
    try:
        yield conn
    finally:
        await conn.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_existing_machines_keep_their_model_and_get_a_class(
    fresh: asyncpg.Connection,
) -> None:
    every = packaged_migrations()
    assert REGISTRY in [m.version for m in every]
    await migrate(fresh, [m for m in every if m.version < REGISTRY])
    old = {
        "M-EX": "excavator",
        "M-PT": "pump_truck",
        "M-CR": "crane",
        "M-TC": "truck_crane",
        "M-CP": "concrete_pump",
        "M-WL": "wheel_loader",
        "M-DZ": "dozer",
        "M-ZZ": "model_42",
    }
    await fresh.executemany(
        "INSERT INTO machines (machine_id, model, customer_id) VALUES ($1, $2, 'C')", old.items()
    )
    await fresh.execute(
        "INSERT INTO anomaly_models (model, version, trained_from, trained_to, machines, windows,"
        " summary, blob) VALUES ('excavator', 3, now(), now(), 1, 10, '{}', '\\x00')"
    )

    await migrate(fresh)

    rows = await fresh.fetch("SELECT machine_id, model, machine_class FROM machines")
    got = {r["machine_id"]: (r["model"], r["machine_class"]) for r in rows}
    assert got == {
        "M-EX": ("excavator", "excavator"),
        "M-PT": ("pump_truck", "pump_truck"),
        "M-CR": ("crane", "crane"),
        "M-TC": ("truck_crane", "crane"),
        "M-CP": ("concrete_pump", "pump_truck"),
        "M-WL": ("wheel_loader", "loader"),
        "M-DZ": ("dozer", "bulldozer"),
        "M-ZZ": ("model_42", "other"),
    }
    # A model trained before stays in use for the machines it was trained on (by their model).
    stored = await fresh.fetchrow("SELECT scope, model, version FROM anomaly_models")
    assert tuple(stored) == ("model", "excavator", 3)
    # Writers of before, which name no class, still insert: the class follows from the model.
    await fresh.execute(
        "INSERT INTO machines (machine_id, model, customer_id) VALUES ('N', 'crane', 'C')"
    )
    assert (
        await fresh.fetchval("SELECT machine_class FROM machines WHERE machine_id = 'N'") == "crane"
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await fresh.execute(
            "INSERT INTO machines (machine_id, model, customer_id, machine_class)"
            " VALUES ('Q', 'SY215C', 'C', 'tank')"
        )
