"""AEMP elements from work summaries: `CumulativeIdleHours`, `FuelUsed`, `FuelUsedLast24` and
`Distance` summed from `summary_slots` rows (inserted here with SQL, with the `summary_days`
rows the rollup keeps with them), in the snapshot (one
machine and fleet pages, XML and JSON) and as hourly series over a range, paged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from lxml import etree

from tests.conftest import unique
from tests.telematics.aemp_world import NS, access_token, utc
from tests.telematics.harness import api_client

N = {"a": NS}
SLOT = timedelta(minutes=15)
BASE = datetime(2026, 3, 1, tzinfo=UTC)
TANK_L = 400.0


@dataclass(frozen=True)
class Slot:
    slot: datetime
    idle_s: float
    fuel_used_pct: float
    distance_m: float


def _slots() -> list[Slot]:
    """One early slot two days before, then 500 slot places from BASE with every seventh left
    out (hours with fewer slots). Values are exact in binary, so sums compare exactly."""
    found = [Slot(BASE - timedelta(days=2), 3600.0, 2.5, 1000.0)]
    for i in range(500):
        if i % 7 == 3:
            continue
        found.append(Slot(BASE + i * SLOT, 30.0 * (i % 5), (i % 9) / 8, 125.5 * (i % 4)))
    return found


@dataclass(frozen=True)
class Expected:
    ts: datetime
    idle_h: float
    fuel_l: float
    fuel24_l: float
    km: float


def _expected(slots: list[Slot], upto: datetime, tail: datetime | None, tank: float) -> Expected:
    """The figures the feed must show at slot `upto` (computed independently of the SQL)."""
    upto_slots = [s for s in slots if s.slot <= upto]
    last24 = [s for s in upto_slots if s.slot > upto - timedelta(hours=24)]
    ts = tail if tail is not None and upto <= tail < upto + SLOT else upto + SLOT
    return Expected(
        ts=ts,
        idle_h=round(sum(s.idle_s for s in upto_slots) / 3600, 3),
        fuel_l=round(sum(s.fuel_used_pct for s in upto_slots) * tank / 100, 3),
        fuel24_l=round(sum(s.fuel_used_pct for s in last24) * tank / 100, 3),
        km=round(sum(s.distance_m for s in upto_slots) / 1000, 3),
    )


@dataclass(frozen=True)
class World:
    http: httpx.AsyncClient
    auth: dict[str, str]
    tanked: str
    tankless: str
    empty: str
    other: str
    slots: list[Slot]
    tail: datetime


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    """A customer with a machine with a tank, one without (same slots) and one without slots;
    another customer's machine with slots."""
    customer, other_customer = unique("AEMPW"), unique("AEMPO")
    prefix = unique("AEW")
    tanked, tankless, empty, other = (f"{prefix}-{n}" for n in ("a", "b", "c", "d"))
    slots = _slots()
    newest = slots[-1].slot
    tail = newest + timedelta(minutes=7, seconds=3, milliseconds=500)
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO machines (machine_id, model, customer_id, fuel_tank_l) "
            "VALUES ($1, 'SY215C', $2, $3)",
            [
                (tanked, customer, TANK_L),
                (tankless, customer, None),
                (empty, customer, TANK_L),
                (other, other_customer, TANK_L),
            ],
        )
        await conn.executemany(
            "INSERT INTO summary_slots (machine_id, slot, idle_s, fuel_used_pct, distance_m) "
            "VALUES ($1, $2, $3, $4, $5)",
            [
                (m, s.slot, s.idle_s, s.fuel_used_pct, s.distance_m)
                for m in (tanked, tankless, other)
                for s in slots
            ],
        )
        # The day rows the rollup keeps with the slots (per UTC day: no customer settings).
        await conn.execute(
            "INSERT INTO summary_days (machine_id, day, idle_s, fuel_used_pct, distance_m, "
            "working_by_hour) SELECT machine_id, (slot AT TIME ZONE 'UTC')::date, sum(idle_s), "
            "sum(fuel_used_pct), sum(distance_m), array_fill(0::float8, ARRAY[24]) "
            "FROM summary_slots WHERE machine_id = ANY($1::text[]) GROUP BY 1, 2",
            [tanked, tankless, other],
        )
        await conn.execute(
            "INSERT INTO summary_tails (machine_id, ts, state) VALUES ($1, $2, '{}')", tanked, tail
        )
    async with api_client(pool) as http:
        auth = await access_token(http, customer)
        yield World(http, auth, tanked, tankless, empty, other, slots, tail)


def _xml_values(equipment: etree._Element) -> dict[str, tuple[str, dict[str, str]]]:
    """The summary elements of an XML `Equipment`: name -> (datetime, children's text)."""
    found = {}
    for name in ("CumulativeIdleHours", "FuelUsed", "FuelUsedLast24", "Distance"):
        node = equipment.find(f"a:{name}", N)
        if node is not None:
            children = {etree.QName(c).localname: str(c.text) for c in node}
            found[name] = (str(node.get("datetime")), children)
    return found


def _as_xml(expected: Expected, *, fuel: bool) -> dict[str, tuple[str, dict[str, str]]]:
    at = utc(expected.ts)
    found = {"CumulativeIdleHours": (at, {"Hour": repr(expected.idle_h)})}
    if fuel:
        found["FuelUsed"] = (at, {"FuelUnits": "litre", "FuelConsumed": repr(expected.fuel_l)})
        found["FuelUsedLast24"] = (
            at,
            {"FuelUnits": "litre", "FuelConsumed": repr(expected.fuel24_l)},
        )
    found["Distance"] = (at, {"OdometerUnits": "kilometre", "Odometer": repr(expected.km)})
    return found


def _as_json(expected: Expected, *, fuel: bool) -> dict[str, dict[str, object]]:
    return {
        name: {"datetime": at, **{k: (v if not v[0].isdigit() else float(v)) for k, v in f.items()}}
        for name, (at, f) in _as_xml(expected, fuel=fuel).items()
    }


def _json_values(equipment: dict[str, object]) -> dict[str, object]:
    names = ("CumulativeIdleHours", "FuelUsed", "FuelUsedLast24", "Distance")
    return {k: v for k, v in equipment.items() if k in names}


async def test_snapshot_of_one_machine_sums_its_slots(world: World) -> None:
    http, auth = world.http, world.auth
    newest = world.slots[-1].slot
    tanked = _expected(world.slots, newest, world.tail, TANK_L)
    assert tanked.ts == world.tail  # the tail is inside the newest slot
    tankless = _expected(world.slots, newest, None, TANK_L)
    assert tankless.ts == newest + SLOT
    assert tanked.fuel24_l < tanked.fuel_l  # the early slot and the first day are not in it
    for machine_id, expected, fuel in (
        (world.tanked, tanked, True),
        (world.tankless, tankless, False),
    ):
        answer = await http.get(f"/aemp/Fleet/Equipment/ID/{machine_id}", headers=auth)
        assert answer.status_code == 200, answer.text
        root = etree.fromstring(answer.content)
        assert _xml_values(root) == _as_xml(expected, fuel=fuel)
        assert root.findtext("a:EquipmentHeader/a:EquipmentID", namespaces=N) == machine_id
        as_json = await http.get(
            f"/aemp/Fleet/Equipment/ID/{machine_id}",
            headers={**auth, "Accept": "application/json"},
        )
        assert _json_values(as_json.json()) == _as_json(expected, fuel=fuel)
    empty = await http.get(f"/aemp/Fleet/Equipment/ID/{world.empty}", headers=auth)
    assert _xml_values(etree.fromstring(empty.content)) == {}
    # another customer's machine stays hidden, summaries or not
    hidden = await http.get(f"/aemp/Fleet/Equipment/ID/{world.other}", headers=auth)
    assert hidden.status_code == 404


async def test_fleet_page_carries_every_machines_summary(world: World) -> None:
    http, auth = world.http, world.auth
    newest = world.slots[-1].slot
    want = {
        world.tanked: (_expected(world.slots, newest, world.tail, TANK_L), True),
        world.tankless: (_expected(world.slots, newest, None, TANK_L), False),
    }
    answer = await http.get("/aemp/Fleet/1", headers=auth)
    assert answer.status_code == 200, answer.text
    root = etree.fromstring(answer.content)
    seen = {}
    for equipment in root.findall("a:Equipment", N):
        machine_id = str(equipment.findtext("a:EquipmentHeader/a:EquipmentID", namespaces=N))
        seen[machine_id] = _xml_values(equipment)
    assert seen == {
        world.tanked: _as_xml(want[world.tanked][0], fuel=True),
        world.tankless: _as_xml(want[world.tankless][0], fuel=False),
        world.empty: {},
    }
    as_json = await http.get("/aemp/Fleet/1", headers={**auth, "Accept": "application/json"})
    seen_json = {
        e["EquipmentHeader"]["EquipmentID"]: _json_values(e) for e in as_json.json()["Equipment"]
    }
    assert seen_json == {
        world.tanked: _as_json(want[world.tanked][0], fuel=True),
        world.tankless: _as_json(want[world.tankless][0], fuel=False),
        world.empty: {},
    }


def _series_path(machine_id: str, element: str, start: datetime, end: datetime, page: int) -> str:
    return f"/aemp/Fleet/Equipment/ID/{machine_id}/{element}/{utc(start)}/{utc(end)}/{page}"


def _hourly(slots: list[Slot], start: datetime, end: datetime) -> list[datetime]:
    """The newest slot starting in [start, end) of each UTC hour, oldest first."""
    newest: dict[datetime, datetime] = {}
    for s in slots:
        if start <= s.slot < end:
            hour = s.slot.replace(minute=0)
            newest[hour] = max(newest.get(hour, s.slot), s.slot)
    return [newest[h] for h in sorted(newest)]


_FIELDS = {
    "CumulativeIdleHours": lambda e: {"Hour": repr(e.idle_h)},
    "FuelUsed": lambda e: {"FuelUnits": "litre", "FuelConsumed": repr(e.fuel_l)},
    "FuelUsedLast24": lambda e: {"FuelUnits": "litre", "FuelConsumed": repr(e.fuel24_l)},
    "Distance": lambda e: {"OdometerUnits": "kilometre", "Odometer": repr(e.km)},
}


@pytest.mark.parametrize(
    ("element", "alias"),
    [
        ("CumulativeIdleHours", "IdleHours"),
        ("FuelUsed", "CumulativeFuelUsed"),
        ("FuelUsedLast24", "fuelused24"),
        ("Distance", "Odometer"),
    ],
)
async def test_series_holds_cumulative_values_at_each_hour(
    world: World, element: str, alias: str
) -> None:
    http, auth = world.http, world.auth
    # From 20 minutes into BASE's first hour to the end: the early slot and BASE's first slot
    # are before the range but counted; the newest hour holds the tail.
    start, end = BASE + timedelta(minutes=20), BASE + timedelta(days=6)
    hours = _hourly(world.slots, start, end)
    assert len(hours) > 100  # two pages
    figures = [_expected(world.slots, s, world.tail, TANK_L) for s in hours]
    want = [(utc(e.ts), _FIELDS[element](e)) for e in figures]
    got: list[tuple[str, dict[str, str]]] = []
    got_json: list[dict[str, object]] = []
    for page in (1, 2):
        answer = await http.get(_series_path(world.tanked, alias, start, end, page), headers=auth)
        assert answer.status_code == 200, answer.text
        root = etree.fromstring(answer.content)
        assert etree.QName(root).localname == element
        rels = {str(link.findtext("a:rel", namespaces=N)) for link in root.findall("a:Links", N)}
        assert ("next" in rels) == (page == 1)
        got.extend(
            (str(node.get("datetime")), {etree.QName(c).localname: str(c.text) for c in node})
            for node in root.findall(f"a:{element}", N)
        )
        as_json = await http.get(
            _series_path(world.tanked, element, start, end, page),
            headers={**auth, "Accept": "application/json"},
        )
        assert as_json.json()["series"] == element
        got_json += as_json.json()[element]
    assert got == want
    assert got_json == [
        {"datetime": at, **{k: (v if not v[0].isdigit() else float(v)) for k, v in f.items()}}
        for at, f in want
    ]
    assert got[0][0] == utc(BASE + timedelta(minutes=45))  # first hour's newest slot, its end
    assert got[-1][0] == utc(world.tail)


async def test_series_edges(world: World) -> None:
    http, auth = world.http, world.auth
    start, end = BASE - timedelta(days=1), BASE + timedelta(days=1)
    # no tank: the fuel series are empty, the others are not
    for element, count in (("FuelUsed", 0), ("FuelUsedLast24", 0), ("Distance", 24)):
        answer = await http.get(
            _series_path(world.tankless, element, start, end, 1),
            headers={**auth, "Accept": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()[element]) == count
    # a range before any slot, and a machine without slots: no points
    for machine_id, a, b in (
        (world.tanked, BASE - timedelta(days=10), BASE - timedelta(days=5)),
        (world.empty, start, end),
    ):
        answer = await http.get(_series_path(machine_id, "Distance", a, b, 1), headers=auth)
        assert answer.status_code == 200
        assert etree.fromstring(answer.content).findall("a:Distance", N) == []
    # a page past the last: empty, with links
    past = await http.get(_series_path(world.tanked, "Distance", start, end, 9), headers=auth)
    root = etree.fromstring(past.content)
    assert root.findall("a:Distance", N) == []
    assert root.findall("a:Links", N)
    # another customer's machine, a bad range: problems
    hidden = await http.get(_series_path(world.other, "Distance", start, end, 1), headers=auth)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    backwards = await http.get(_series_path(world.tanked, "Distance", end, start, 1), headers=auth)
    assert backwards.status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "/aemp/Fleet/Equipment/ID/a%00b/Distance/2026-03-01T00:00:00Z/2026-03-02T00:00:00Z/1",
        "/aemp/Fleet/Equipment/ID/a%00b",
        "/aemp/Fleet/Equipment/ID/{m}/Distance/2026-03-01T00:00:00Z%00/2026-03-02T00:00:00Z/1",
        "/aemp/Fleet/Equipment/ID/{m}/Distance/2026-03-01T00:00:00Z/2026-04-02T00:00:00Z/1",
        "/aemp/Fleet/Equipment/ID/{m}/Distance/2026-03-01T00:00:00Z/2026-03-02T00:00:00Z/0",
    ],
)
async def test_junk_summary_requests_are_problems(world: World, path: str) -> None:
    answer = await world.http.get(path.format(m=world.tanked), headers=world.auth)
    assert answer.status_code in (400, 404, 422), answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_page_far_past_the_last_is_empty(world: World) -> None:
    start, end = BASE, BASE + timedelta(days=2)
    answer = await world.http.get(
        _series_path(world.tanked, "DISTANCE", start, end, 1_000_000),
        headers={**world.auth, "Accept": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["Distance"] == []
    assert {link["rel"] for link in body["Links"]} == {"self", "first", "prev", "last"}
