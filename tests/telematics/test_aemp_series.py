"""AEMP time series of one machine: readings over a range, paged; fault codes from the
readings' dtc; caution codes from alarms; vendor names; bounded, checked ranges.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest
from lxml import etree

from diagnosis.events import LOW_OIL_PRESSURE, AlarmEvent, Severity, Transition
from telematics.store import alarms as alarm_store
from tests.conftest import unique
from tests.telematics.aemp_world import NS, access_token, utc
from tests.telematics.harness import api_client

N = {"a": NS}
POINTS = 230


@pytest.fixture
async def machine(
    pool: asyncpg.Pool,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], str, datetime, datetime]]:
    """A machine with POINTS readings a minute apart (every third without a position, every
    fifth with two fault codes), and a request range that holds them all."""
    customer, machine_id = unique("AEMPS"), unique("AES")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    rows = []
    for i in range(POINTS):
        ts = start + timedelta(minutes=i, milliseconds=250)
        dtc = orjson.dumps([{"spn": 100, "fmi": 1, "oc": i}, {"spn": 110, "fmi": 0}]).decode()
        rows.append(
            (
                machine_id,
                ts,
                None if i % 3 == 0 else 31.0 + i / 1e4,
                121.0 + i / 1e4,
                10.0 + i / 10,
                50.0 - i / 10,
                800.0 if i % 2 else 0.0,
                dtc if i % 5 == 0 else None,
            )
        )
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO machines (machine_id, model, customer_id, fuel_tank_l) "
            "VALUES ($1, 'SY215C', $2, 300)",
            machine_id,
            customer,
        )
        await conn.executemany(
            "INSERT INTO readings (machine_id, ts, lat, lon, engine_hours, fuel_level_pct, "
            "engine_speed_rpm, dtc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
            rows,
        )
    async with api_client(pool) as http:
        yield http, await access_token(http, customer), machine_id, start, start + timedelta(days=1)


def _path(machine_id: str, element: str, start: datetime, end: datetime, page: int) -> str:
    return f"/aemp/Fleet/Equipment/ID/{machine_id}/{element}/{utc(start)}/{utc(end)}/{page}"


async def _xml_pages(
    http: httpx.AsyncClient, auth: dict[str, str], machine_id: str, element: str,
    start: datetime, end: datetime,
) -> list[etree._Element]:  # fmt: skip
    points: list[etree._Element] = []
    page = 1
    while True:
        answer = await http.get(_path(machine_id, element, start, end, page), headers=auth)
        assert answer.status_code == 200, answer.text
        root = etree.fromstring(answer.content)
        links = {
            link.findtext("a:rel", namespaces=N): link.findtext("a:href", namespaces=N)
            for link in root.findall("a:Links", N)
        }
        assert links["self"] == f"http://api{_path(machine_id, element, start, end, page)}"
        assert root.findtext("a:EquipmentHeader/a:EquipmentID", namespaces=N) == machine_id
        points += [child for child in root if etree.QName(child).localname not in
                   ("Links", "EquipmentHeader")]  # fmt: skip
        if "next" not in links:
            return points
        page += 1


async def test_locations_over_a_range_page_oldest_first(
    machine: tuple[httpx.AsyncClient, dict[str, str], str, datetime, datetime],
) -> None:
    http, auth, machine_id, start, end = machine
    points = await _xml_pages(http, auth, machine_id, "Locations", start, end)
    expected = [i for i in range(POINTS) if i % 3 != 0]
    assert len(points) == len(expected)
    for point, i in zip(points, expected, strict=True):
        assert etree.QName(point).localname == "Location"
        assert point.get("datetime") == utc(start + timedelta(minutes=i))
        assert float(point.findtext("a:Latitude", namespaces=N)) == 31.0 + i / 1e4
        assert float(point.findtext("a:Longitude", namespaces=N)) == 121.0 + i / 1e4
    # A sub-range holds only its readings; start is inclusive, end exclusive.
    sub = await _xml_pages(
        http, auth, machine_id, "Locations", start + timedelta(minutes=1),
        start + timedelta(minutes=5),
    )  # fmt: skip
    assert [p.get("datetime") for p in sub] == [
        utc(start + timedelta(minutes=i)) for i in (1, 2, 4)
    ]
    # Past the last page: an empty list.
    answer = await http.get(_path(machine_id, "Locations", start, end, 9), headers=auth)
    root = etree.fromstring(answer.content)
    assert root.findall("a:Location", N) == []


async def test_vendor_names_of_a_series_answer_the_same_series_in_json(
    machine: tuple[httpx.AsyncClient, dict[str, str], str, datetime, datetime],
) -> None:
    http, auth, machine_id, start, end = machine
    json_auth = {**auth, "Accept": "application/json"}
    canonical = await http.get(
        _path(machine_id, "CumulativeOperatingHours", start, end, 3), headers=json_auth
    )
    assert canonical.status_code == 200
    body = canonical.json()
    assert body["series"] == "CumulativeOperatingHours"
    hours = body["CumulativeOperatingHours"]
    assert len(hours) == POINTS - 200
    assert hours[0] == {"datetime": utc(start + timedelta(minutes=200)), "Hour": 10.0 + 200 / 10}
    for alias in ("OperatingHours", "operatinghours", "EngineHours"):
        again = await http.get(_path(machine_id, alias, start, end, 3), headers=json_auth)
        assert again.json()["CumulativeOperatingHours"] == hours
    fuel = (await http.get(_path(machine_id, "FuelRemainingRatio", start, end, 1),
                           headers=json_auth)).json()["FuelRemaining"]  # fmt: skip
    assert fuel[1] == {
        "datetime": utc(start + timedelta(minutes=1)), "Percent": 50.0 - 0.1,
        "FuelTankCapacity": 300.0, "FuelTankCapacityUnits": "litre",
    }  # fmt: skip
    engine = (await http.get(_path(machine_id, "EngineCondition", start, end, 1),
                             headers=json_auth)).json()["EngineCondition"]  # fmt: skip
    assert [e["Running"] for e in engine[:4]] == [False, True, False, True]


async def test_fault_codes_come_from_the_readings_dtc_with_their_occurrence_count(
    machine: tuple[httpx.AsyncClient, dict[str, str], str, datetime, datetime],
) -> None:
    http, auth, machine_id, start, end = machine
    points = await _xml_pages(http, auth, machine_id, "FaultCodes", start, end)
    expected = [(i, spn, fmi, oc) for i in range(0, POINTS, 5) for spn, fmi, oc in
                ((100, 1, i), (110, 0, 0))]  # fmt: skip
    assert len(points) == len(expected) == 92
    for point, (i, spn, fmi, oc) in zip(points, expected, strict=True):
        assert point.get("datetime") == utc(start + timedelta(minutes=i))
        assert int(point.findtext("a:SPN", namespaces=N)) == spn
        assert int(point.findtext("a:FMI", namespaces=N)) == fmi
        assert int(point.findtext("a:OccurrenceCount", namespaces=N)) == oc


async def test_caution_codes_are_the_alarms_open_within_the_range(
    pool: asyncpg.Pool,
    machine: tuple[httpx.AsyncClient, dict[str, str], str, datetime, datetime],
) -> None:
    http, auth, machine_id, start, end = machine
    raised = start + timedelta(hours=1)
    async with pool.acquire() as conn, conn.transaction():
        await alarm_store.apply_events(
            conn,
            [AlarmEvent(machine_id, LOW_OIL_PRESSURE, Transition.RAISED,
                        int(raised.timestamp() * 1000))],
            lambda _: (Severity.CRITICAL, "Low oil pressure"),
        )  # fmt: skip
    json_auth = {**auth, "Accept": "application/json"}
    cautions = (await http.get(_path(machine_id, "CautionCodes", start, end, 1),
                               headers=json_auth)).json()["CautionCode"]  # fmt: skip
    assert cautions == [
        {
            "datetime": utc(raised),
            "CautionCodeIdentifier": LOW_OIL_PRESSURE,
            "CautionCodeDescription": "Low oil pressure",
            "Severity": "critical",
            "Active": True,
        }
    ]
    before = await http.get(
        _path(machine_id, "CautionCodes", start - timedelta(days=3), start, 1), headers=json_auth
    )
    assert before.json()["CautionCode"] == []


@pytest.mark.parametrize(
    ("element", "start", "end", "status"),
    [
        ("Locations", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", 422),  # over 31 days
        ("Locations", "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", 422),  # backwards
        ("Locations", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", 422),  # empty
        ("Locations", "yesterday", "2026-01-01T00:00:00Z", 422),
        ("Locations", "9999-12-31T23:59:59-05:00", "2026-01-01T00:00:00Z", 422),
        ("Locations", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z" + "0" * 60, 422),
        ("NoSuchElement", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 404),
        ("FuelUsed", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z", 422),  # summary, too long
    ],
)
async def test_bad_series_requests_are_refused_as_problems(
    machine: tuple[httpx.AsyncClient, dict[str, str], str, datetime, datetime],
    element: str, start: str, end: str, status: int,
) -> None:  # fmt: skip
    http, auth, machine_id, _, _ = machine
    path = f"/aemp/Fleet/Equipment/ID/{machine_id}/{element}/{start}/{end}/1"
    answer = await http.get(path, headers=auth)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    for page in ("0", "-1", "x", "99999999999999999999"):
        bad_page = await http.get(_path(machine_id, "Locations", datetime(2026, 1, 1, tzinfo=UTC),
                                        datetime(2026, 1, 2, tzinfo=UTC), 1)[:-1] + page,
                                  headers=auth)  # fmt: skip
        assert bad_page.status_code == 422
