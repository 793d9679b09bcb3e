"""The AEMP fleet snapshot: paging in XML and JSON, and every element equal to the newest
reading's, read back with parsers that know nothing of this code (lxml, json).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from lxml import etree

from tests.conftest import unique
from tests.telematics.aemp_world import NS, Latest, access_token, seed_fleet, utc
from tests.telematics.harness import api_client

FLEET = 250
N = {"a": NS}


@pytest.fixture
async def fleet(
    pool: asyncpg.Pool,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], dict[str, Latest], str]]:
    customer = unique("AEMPC")
    prefix = unique("AEM")
    latest = await seed_fleet(pool, customer, prefix, FLEET)
    async with api_client(pool) as http:
        yield http, await access_token(http, customer), latest, prefix


def _text(node: etree._Element, path: str) -> str | None:
    found = node.find(path, N)
    return None if found is None else found.text


def _links_xml(root: etree._Element) -> dict[str, str]:
    return {
        str(_text(link, "a:rel")): str(_text(link, "a:href")) for link in root.findall("a:Links", N)
    }


def _check_xml_equipment(equipment: etree._Element, latest: dict[str, Latest], prefix: str) -> str:
    machine_id = str(_text(equipment, "a:EquipmentHeader/a:EquipmentID"))
    i = int(machine_id.rsplit("-", 1)[1])
    assert _text(equipment, "a:EquipmentHeader/a:OEMName") == "Komatsu"
    assert _text(equipment, "a:EquipmentHeader/a:Model") == f"PC{200 + i % 5}-8"
    assert _text(equipment, "a:EquipmentHeader/a:SerialNumber") == f"SN{i:06d}"
    assert _text(equipment, "a:EquipmentHeader/a:PIN") == f"SN{i:06d}"
    value = latest.get(machine_id)
    names = [etree.QName(child).localname for child in equipment]
    if value is None:  # never reported: the header alone
        assert names == ["EquipmentHeader"]
        return machine_id
    when = utc(value.ts)
    location = equipment.find("a:Location", N)
    if value.lat is None:
        assert location is None
    else:
        assert location is not None
        assert location.get("datetime") == when
        assert float(str(_text(location, "a:Latitude"))) == value.lat
        assert float(str(_text(location, "a:Longitude"))) == value.lon
    hours = equipment.find("a:CumulativeOperatingHours", N)
    assert hours is not None
    assert hours.get("datetime") == when
    assert float(str(_text(hours, "a:Hour"))) == value.engine_hours
    fuel = equipment.find("a:FuelRemaining", N)
    assert fuel is not None
    assert fuel.get("datetime") == when
    assert float(str(_text(fuel, "a:Percent"))) == value.fuel_level_pct
    assert float(str(_text(fuel, "a:FuelTankCapacity"))) == 400.0 + i
    engine = equipment.find("a:EngineStatus", N)
    assert engine is not None
    assert engine.get("datetime") == when
    assert _text(engine, "a:Running") == ("true" if value.engine_speed_rpm else "false")
    assert machine_id.startswith(prefix)
    return machine_id


async def test_a_fleet_of_250_pages_in_xml_with_every_element_of_the_newest_reading(
    fleet: tuple[httpx.AsyncClient, dict[str, str], dict[str, Latest], str],
) -> None:
    http, auth, latest, prefix = fleet
    seen: list[str] = []
    for page, expected in ((1, 100), (2, 100), (3, 50), (4, 0)):
        answer = await http.get(f"/aemp/Fleet/{page}", headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/xml")
        root = etree.fromstring(answer.content)
        assert root.tag == f"{{{NS}}}Fleet"
        assert root.get("version") == "2"
        assert root.get("snapshotTime", "").endswith("Z")
        links = _links_xml(root)
        assert links["self"] == f"http://api/aemp/Fleet/{page}"
        assert links["first"] == "http://api/aemp/Fleet/1"
        assert links["last"] == "http://api/aemp/Fleet/3"
        assert ("prev" in links) == (page > 1)
        assert links.get("next") == (f"http://api/aemp/Fleet/{page + 1}" if page < 3 else None)
        equipment = root.findall("a:Equipment", N)
        assert len(equipment) == expected
        seen += [_check_xml_equipment(e, latest, prefix) for e in equipment]
    assert seen == sorted(f"{prefix}-{i:04d}" for i in range(FLEET))
    assert (await http.get("/aemp/Fleet", headers=auth)).content.count(b"<Equipment>") == 100


async def test_the_same_fleet_pages_in_json(
    fleet: tuple[httpx.AsyncClient, dict[str, str], dict[str, Latest], str],
) -> None:
    http, auth, latest, prefix = fleet
    seen: list[str] = []
    json_accept = {**auth, "Accept": "application/json, text/plain, */*"}
    for page, expected in ((1, 100), (2, 100), (3, 50), (4, 0)):
        answer = await http.get(f"/aemp/Fleet/{page}", headers=json_accept)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert body["version"] == "2"
        links = {link["rel"]: link["href"] for link in body["Links"]}
        assert links["self"] == f"http://api/aemp/Fleet/{page}"
        assert links["last"] == "http://api/aemp/Fleet/3"
        assert len(body["Equipment"]) == expected
        for equipment in body["Equipment"]:
            machine_id = equipment["EquipmentHeader"]["EquipmentID"]
            seen.append(machine_id)
            value = latest.get(machine_id)
            if value is None:
                assert list(equipment) == ["EquipmentHeader"]
                continue
            assert equipment["CumulativeOperatingHours"] == {
                "datetime": utc(value.ts),
                "Hour": value.engine_hours,
            }
            assert equipment["FuelRemaining"]["Percent"] == value.fuel_level_pct
            assert equipment["EngineStatus"]["Running"] is bool(value.engine_speed_rpm)
            if value.lat is None:
                assert "Location" not in equipment
            else:
                assert equipment["Location"]["Latitude"] == value.lat
                assert equipment["Location"]["Longitude"] == value.lon
    assert seen == sorted(f"{prefix}-{i:04d}" for i in range(FLEET))
    # A client that names XML first, or only wildcards, gets XML.
    for accept in ("application/xml, application/json", "*/*", "application/json;q=0.5, */*"):
        answer = await http.get("/aemp/Fleet/1", headers={**auth, "Accept": accept})
        assert answer.headers["content-type"].startswith("application/xml"), accept


async def test_one_machine_and_a_customer_sees_no_other_customers_machine(
    pool: asyncpg.Pool,
    fleet: tuple[httpx.AsyncClient, dict[str, str], dict[str, Latest], str],
) -> None:
    http, auth, latest, prefix = fleet
    machine_id = f"{prefix}-0003"
    answer = await http.get(f"/aemp/Fleet/Equipment/ID/{machine_id}", headers=auth)
    assert answer.status_code == 200, answer.text
    root = etree.fromstring(answer.content)
    assert root.tag == f"{{{NS}}}Equipment"
    assert _check_xml_equipment(root, latest, prefix) == machine_id
    # Another customer's client: the machine does not exist for it, and its fleet is its own.
    other = unique("AEMPO")
    other_latest = await seed_fleet(pool, other, unique("AEO"), 3)
    other_auth = await access_token(http, other)
    for path in (
        f"/aemp/Fleet/Equipment/ID/{machine_id}",
        f"/aemp/Fleet/Equipment/ID/{machine_id}/Locations/2026-01-01T00:00:00Z/2026-01-02T00:00:00Z/1",
    ):
        refused = await http.get(path, headers=other_auth)
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/problem+json"
    theirs = (
        await http.get("/aemp/Fleet/1", headers={**other_auth, "Accept": "application/json"})
    ).json()
    ids = [e["EquipmentHeader"]["EquipmentID"] for e in theirs["Equipment"]]
    assert len(ids) == 3
    assert set(ids) >= set(other_latest)
    assert not any(i.startswith(prefix) for i in ids)
    assert (
        await http.get("/aemp/Fleet/Equipment/ID/no-such-machine", headers=auth)
    ).status_code == 404


async def test_text_xml_cannot_hold_never_reaches_the_document(pool: asyncpg.Pool) -> None:
    customer, machine_id = unique("AEMPX"), unique("AEX")
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO machines (machine_id, model, customer_id, oem) VALUES ($1, $2, $3, $4)",
            machine_id,
            "<PC&200>\x01\x1f\ufffe",
            customer,
            "]]>\"'",
        )
    async with api_client(pool) as http:
        auth = await access_token(http, customer)
        answer = await http.get(f"/aemp/Fleet/Equipment/ID/{machine_id}", headers=auth)
        assert answer.status_code == 200
        root = etree.fromstring(answer.content)  # lxml refuses characters XML cannot hold
        assert _text(root, "a:EquipmentHeader/a:Model") == "<PC&200>\ufffd\ufffd\ufffd"
        assert _text(root, "a:EquipmentHeader/a:OEMName") == "]]>\"'"
        as_json = await http.get(
            f"/aemp/Fleet/Equipment/ID/{machine_id}", headers={**auth, "Accept": "application/json"}
        )
        assert as_json.json()["EquipmentHeader"]["Model"] == "<PC&200>\ufffd\ufffd\ufffd"
