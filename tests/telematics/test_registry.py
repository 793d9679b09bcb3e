"""The machine registry as fleets describe machines: designations, classes, CSV import, status.

Through the HTTP app in-process against the real database.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from simulators import make_fleet
from telematics.api.schemas import MachineIn
from telematics.store import alarms as alarm_store
from telematics.store.machine_fields import MACHINE_CLASSES
from tests.conftest import unique
from tests.telematics.harness import api_client

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CSV = {**AUTH, "Content-Type": "text/csv"}

DESIGNATIONS = ["SY215C", "SY365H", "PC200-8", "320 GC", "ZX200-5G", "SY5419THB 56E", "EC220E.2"]


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(pool) as http:
        yield http


@pytest.mark.parametrize("designation", DESIGNATIONS)
async def test_real_model_designations_are_registered_as_written(
    client: httpx.AsyncClient, designation: str
) -> None:
    machine = unique("SY")
    body = {
        "machine_id": machine,
        "model": designation,
        "machine_class": "excavator",
        "customer_id": "CUST-REG",
        "oem": "SANY",
        "serial_number": "SY021512345678901",
        "fuel_tank_l": 340.0,
        "delivered_at": "2024-03-18",
        "name": "Excavator 7, north pit",
        "site": {"lat": 31.2, "lon": 121.5, "radius_m": 800},
    }
    created = await client.post("/v1/machines", json=body, headers=AUTH)
    assert created.status_code == 201, created.text
    fetched = (await client.get(f"/v1/machines/{machine}", headers=AUTH)).json()
    for doc in (created.json(), fetched):
        for key, value in body.items():
            assert doc[key] == value, key


async def test_machine_class_defaults_from_the_model_for_clients_of_before(
    client: httpx.AsyncClient,
) -> None:
    crane, designation = unique("CR"), unique("XX")
    for machine, model in ((crane, "crane"), (designation, "PC200-8")):
        body = {"machine_id": machine, "model": model, "customer_id": "CUST-REG"}
        assert (await client.post("/v1/machines", json=body, headers=AUTH)).status_code == 201
    assert (await client.get(f"/v1/machines/{crane}", headers=AUTH)).json()["machine_class"] == (
        "crane"
    )
    got = (await client.get(f"/v1/machines/{designation}", headers=AUTH)).json()
    assert got["machine_class"] == "other"
    assert got["oem"] is None
    assert got["delivered_at"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", " SY215C"),
        ("model", "SY215C "),
        ("model", "SY  215C"),
        ("model", ""),
        ("model", "S" * 65),
        ("model", "SY215C\n"),
        ("model", "SY215C\x00"),
        ("model", "SY/215C"),
        ("model", "SY215C\ud800"),
        ("machine_class", "tower_crane"),
        ("machine_class", "Excavator"),
        ("oem", "SANY\x07"),
        ("oem", " SANY"),
        ("oem", "S" * 65),
        ("serial_number", "PIN\t1"),
        ("serial_number", ""),
        ("fuel_tank_l", 0),
        ("fuel_tank_l", -5),
        ("fuel_tank_l", 1e9),
        ("delivered_at", "yesterday"),
        ("delivered_at", "1800-01-01"),
        ("delivered_at", 1710720000),
        ("delivered_at", "2024-03-18T10:00:00Z"),
        ("name", "\u202eevil"),
        ("name", "x" * 201),
    ],
)
async def test_bad_machine_fields_are_refused_naming_the_field(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    body: dict[str, object] = {
        "machine_id": unique("BAD"),
        "model": "SY215C",
        "machine_class": "excavator",
        "customer_id": "CUST-REG",
        field: value,
    }
    # json.dumps escapes a lone surrogate as \\ud800, which httpx's own encoder refuses to send.
    raw = json.dumps(body).encode()
    answer = await client.post(
        "/v1/machines", content=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["loc"][-1] for e in answer.json()["errors"]] == [field]
    assert (await client.get(f"/v1/machines/{body['machine_id']}", headers=AUTH)).status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "SY  215C"),
        ("model", "S" * 65),
        ("model", "SY/215C"),
        ("model", "SY215C\x00"),
        ("machine_class", "tower_crane"),
        ("oem", "SANY\x07"),
        ("oem", "S" * 65),
        ("serial_number", "PIN\t1"),
        ("fuel_tank_l", "0"),
        ("fuel_tank_l", "1e9"),
        ("fuel_tank_l", "nan"),
        ("delivered_at", "yesterday"),
        ("delivered_at", "1800-01-01"),
        ("delivered_at", "2024-03-18T10:00:00Z"),
        ("name", "\u202eevil"),
        ("name", "x" * 201),
    ],
)
async def test_the_csv_import_refuses_what_the_json_route_refuses(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    row = {"machine_id": unique("CSVBAD"), "model": "SY215C", "customer_id": "C", field: value}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
    answer = await client.post("/v1/import/machines", content=out.getvalue().encode(), headers=CSV)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["errors"]
    assert error.startswith(f"line 2: {field}:"), error
    if field == "fuel_tank_l" and value == "nan":
        return  # JSON has no NaN
    json_body: dict[str, object] = {**row, field: float(value) if field == "fuel_tank_l" else value}
    as_json = await client.post("/v1/machines", json=json_body, headers=AUTH)
    assert as_json.status_code == 422, as_json.text


def _csv(*lines: str) -> bytes:
    header = "machine_id,model,machine_class,customer_id,oem,serial_number,fuel_tank_l,delivered_at"
    return "\n".join([header, *lines, ""]).encode()


async def test_machines_import_from_csv_all_or_nothing_naming_every_bad_line(
    client: httpx.AsyncClient,
) -> None:
    a, b, c = unique("IMA"), unique("IMB"), unique("IMC")
    bad = _csv(
        f"{a},SY215C,excavator,CUST-IM,SANY,SY0215C0001,340,2024-03-18",
        f"{b},SY  215C,excavator,CUST-IM,SANY,,,",
        f"{c},SY5419THB 56E,tower_crane,CUST-IM,SANY,,,",
        f"{a},PC200-8,excavator,CUST-IM,Komatsu,,,",
        f"{unique('IMD')},320 GC,loader,CUST-IM,Caterpillar,,-3,2024-13-01",
        "has space,ZX200-5G,excavator,CUST-IM,Hitachi,,,",
    )
    refused = await client.post("/v1/import/machines", content=bad, headers=CSV)
    assert refused.status_code == 422, refused.text
    errors = refused.json()["errors"]
    assert [e.split(":")[0] for e in errors] == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        "line 6",
        "line 7",
    ], errors
    assert "model" in errors[0]
    assert "machine_class" in errors[1]
    assert "duplicate" in errors[2]
    assert "line 2" in errors[2]
    assert "fuel_tank_l" in errors[3]
    assert "delivered_at" in errors[4]
    assert "machine_id" in errors[5]
    for machine in (a, b, c):
        assert (await client.get(f"/v1/machines/{machine}", headers=AUTH)).status_code == 404

    good = _csv(
        f"{a},SY215C,excavator,CUST-IM,SANY,SY0215C0001,340,2024-03-18",
        f'{b},"SY5419THB 56E",pump_truck,CUST-IM,SANY,,,',
        f"{c},PC200-8,,CUST-IM,Komatsu,,,",
    )
    imported = await client.post("/v1/import/machines", content=good, headers=CSV)
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"kind": "machines", "rows": 3, "created": 3, "updated": 0}
    got = (await client.get(f"/v1/machines/{b}", headers=AUTH)).json()
    assert (got["model"], got["machine_class"], got["oem"]) == (
        "SY5419THB 56E",
        "pump_truck",
        "SANY",
    )
    got = (await client.get(f"/v1/machines/{a}", headers=AUTH)).json()
    assert (got["serial_number"], got["fuel_tank_l"], got["delivered_at"]) == (
        "SY0215C0001",
        340.0,
        "2024-03-18",
    )
    assert (await client.get(f"/v1/machines/{c}", headers=AUTH)).json()["machine_class"] == "other"

    # Again, with fewer columns: the rows are updated, and columns the file leaves out are kept.
    again = f"machine_id,model,customer_id\n{a},SY215C,CUST-IM2\n".encode()
    updated = await client.post("/v1/import/machines", content=again, headers=CSV)
    assert updated.json() == {"kind": "machines", "rows": 1, "created": 0, "updated": 1}
    got = (await client.get(f"/v1/machines/{a}", headers=AUTH)).json()
    assert (got["customer_id"], got["oem"], got["fuel_tank_l"]) == ("CUST-IM2", "SANY", 340.0)


async def test_machines_import_refuses_a_file_without_the_required_columns(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post(
        "/v1/import/machines", content=b"machine_id,oem\nX,SANY\n", headers=CSV
    )
    assert answer.status_code == 422
    assert "model" in answer.json()["errors"][0]
    assert "customer_id" in answer.json()["errors"][0]
    not_utf8 = await client.post("/v1/import/machines", content=b"\xff\xfe\x00", headers=CSV)
    assert not_utf8.status_code == 422


async def _reading(
    conn: asyncpg.Connection, machine_id: str, ts: datetime, **values: float
) -> None:
    names = ", ".join(values)
    marks = ", ".join(f"${i + 3}" for i in range(len(values)))
    await conn.execute(
        f"INSERT INTO readings (machine_id, ts, {names}) VALUES ($1, $2, {marks})",
        machine_id,
        ts,
        *values.values(),
    )


async def test_machine_list_shows_last_reading_status_position_hours_and_open_alarms(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    customer = unique("CUST")
    live, quiet, silent = unique("LIVE"), unique("QUIET"), unique("NEVER")
    for machine in (live, quiet, silent):
        body = {"machine_id": machine, "model": "SY215C", "customer_id": customer}
        assert (await client.post("/v1/machines", json=body, headers=AUTH)).status_code == 201
    now = datetime.now(UTC).replace(microsecond=0)
    async with pool.acquire() as conn:
        await _reading(conn, live, now - timedelta(seconds=30), engine_hours=1200.0, lat=31.0,
                       lon=121.0)  # fmt: skip
        await _reading(conn, live, now - timedelta(seconds=5), engine_hours=1200.5, lat=31.1,
                       lon=121.1, oil_pressure_kpa=300.0)  # fmt: skip
        await _reading(conn, quiet, now - timedelta(hours=3), engine_hours=88.0)
        async with conn.transaction():
            await alarm_store.apply_events(
                conn,
                [
                    AlarmEvent(
                        live, LOW_OIL_PRESSURE, Transition.RAISED, int(now.timestamp() * 1000)
                    )
                ],
                lambda _: (Severity.CRITICAL, "low oil"),
            )

    page = await client.get("/v1/machines", params={"customer_id": customer}, headers=AUTH)
    assert page.status_code == 200, page.text
    by_id = {m["machine_id"]: m for m in page.json()["machines"]}
    assert by_id[live]["last_reading_at"] == (now - timedelta(seconds=5)).isoformat().replace(
        "+00:00", "Z"
    )
    assert by_id[live]["online"] is True
    assert by_id[live]["position"] == {"lat": 31.1, "lon": 121.1}
    assert by_id[live]["engine_hours"] == 1200.5
    assert by_id[live]["open_alarms"] == 1
    assert by_id[quiet]["online"] is False
    assert by_id[quiet]["engine_hours"] == 88.0
    assert by_id[quiet]["position"] is None
    assert by_id[quiet]["open_alarms"] == 0
    assert by_id[silent]["last_reading_at"] is None
    assert by_id[silent]["online"] is False
    # The threshold is the caller's to choose: four hours makes the quiet machine online.
    wide = await client.get(
        "/v1/machines", params={"customer_id": customer, "online_within_s": 4 * 3600}, headers=AUTH
    )
    assert {m["machine_id"]: m["online"] for m in wide.json()["machines"]}[quiet] is True

    latest = await client.get(f"/v1/machines/{live}/latest", headers=AUTH)
    assert latest.status_code == 200, latest.text
    assert latest.json()["oil_pressure_kpa"] == 300.0
    assert latest.json()["engine_hours"] == 1200.5
    none_yet = await client.get(f"/v1/machines/{silent}/latest", headers=AUTH)
    assert none_yet.status_code == 404
    assert (
        await client.get(f"/v1/machines/{unique('NO')}/latest", headers=AUTH)
    ).status_code == 404


async def test_machine_list_filters_by_class_and_model(client: httpx.AsyncClient) -> None:
    customer = unique("CUST")
    rows = [("SY215C", "excavator"), ("SY5419THB 56E", "pump_truck"), ("SY215C", "excavator")]
    for i, (model, machine_class) in enumerate(rows):
        body = {
            "machine_id": f"{customer}-{i}",
            "model": model,
            "machine_class": machine_class,
            "customer_id": customer,
        }
        assert (await client.post("/v1/machines", json=body, headers=AUTH)).status_code == 201
    pumps = await client.get(
        "/v1/machines",
        params={"customer_id": customer, "machine_class": "pump_truck"},
        headers=AUTH,
    )
    assert [m["machine_id"] for m in pumps.json()["machines"]] == [f"{customer}-1"]
    sy = await client.get(
        "/v1/machines", params={"customer_id": customer, "model": "SY215C"}, headers=AUTH
    )
    assert [m["machine_id"] for m in sy.json()["machines"]] == [f"{customer}-0", f"{customer}-2"]
    unknown = await client.get("/v1/machines", params={"machine_class": "tank"}, headers=AUTH)
    assert unknown.status_code == 422


def test_the_simulators_registration_is_what_the_api_takes() -> None:
    for machine in make_fleet(3, id_prefix="SIMREG"):
        body = MachineIn.model_validate(machine.registration_body())
        assert (body.model, body.machine_class) == (machine.designation, machine.machine_class)


async def test_every_class_the_api_takes_the_database_holds(client: httpx.AsyncClient) -> None:
    for machine_class in MACHINE_CLASSES:
        body = {
            "machine_id": unique("CLS"),
            "model": "X1",
            "machine_class": machine_class,
            "customer_id": "C",
        }
        answer = await client.post("/v1/machines", json=body, headers=AUTH)
        assert answer.status_code == 201, (machine_class, answer.text)
        assert answer.json()["machine_class"] == machine_class
