"""Pulling other brands' AEMP feeds: from our own server, and from fixture servers that speak
the dialects real feeds do; readings stored exactly once across polls; what cannot be read is a
dead letter, never a crash.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from telematics.aemp import sources
from telematics.aemp.puller import REASON, pull_source
from telematics.api.context import ApiContext
from telematics.base.metrics import Metrics
from telematics.store.registry import SourceDirectory
from telematics.web import build_app
from telematics.wire.decode import Limits
from tests.conftest import unique
from tests.telematics.aemp_world import access_token, issue_client, seed_fleet
from tests.telematics.harness import ADMIN_TOKEN

Page = tuple[int, str, bytes]
Scope = MutableMapping[str, Any]


def fixture_server(
    pages: dict[str, Page], requested: list[str], basic: tuple[str, str] | None = None
) -> httpx.ASGITransport:
    """An HTTP server of fixed pages by path (404 otherwise), optionally behind HTTP Basic."""
    expected = None
    if basic is not None:
        expected = b"Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode())

    async def app(
        scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        requested.append(scope["path"])
        headers = dict(scope["headers"])
        if expected is not None and headers.get(b"authorization") != expected:
            status, content_type, body = 401, "text/plain", b"who are you"
        else:
            status, content_type, body = pages.get(scope["path"], (404, "text/plain", b"no"))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return httpx.ASGITransport(app=app)  # type: ignore[arg-type]


async def add_source(pool: asyncpg.Pool, customer: str, **fields: object) -> sources.Source:
    async with pool.acquire() as conn:
        return await sources.add_source(
            conn, {"source_id": unique("src")[:20], "customer_id": customer, **fields}
        )


async def machines_of(pool: asyncpg.Pool, customer: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT m.*, (SELECT count(*) FROM readings r WHERE r.machine_id = m.machine_id) AS n "
        "FROM machines m WHERE customer_id = $1 ORDER BY serial_number",
        customer,
    )


async def test_our_own_feed_pulls_into_another_customer_once_across_polls(
    pool: asyncpg.Pool,
) -> None:
    owner, puller_customer, prefix = unique("AEMPW"), unique("AEMPY"), unique("AEW")
    latest = await seed_fleet(pool, owner, prefix, 5)
    app = build_app(
        ApiContext(pool=pool, directory=SourceDirectory(), metrics=Metrics(),
                   admin_token=ADMIN_TOKEN, limits=Limits())
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://own") as http:
        client_id, secret = await issue_client(http, owner)
    source = await add_source(
        pool, puller_customer, base_url="http://own/aemp", auth="oauth",
        token_url="http://own/aemp/token", username=client_id, secret=secret,
    )  # fmt: skip
    first = await pull_source(pool, source, Limits(), transport=transport)
    assert first.error is None, first.summary()
    assert (first.machines, first.registered, first.readings_inserted) == (5, 5, 4)
    again = await pull_source(pool, source, Limits(), transport=transport)
    assert (again.registered, again.readings_inserted, again.readings_duplicate) == (0, 0, 4)
    pulled = await machines_of(pool, puller_customer)
    assert [m["serial_number"] for m in pulled] == [f"SN{i:06d}" for i in range(5)]
    assert {m["oem"] for m in pulled} == {"Komatsu"}
    assert [m["n"] for m in pulled] == [1, 1, 1, 1, 0]
    for i, machine in enumerate(pulled[:4]):
        value = latest[f"{prefix}-{i:04d}"]
        row = await pool.fetchrow(
            "SELECT ts, lat, lon, engine_hours, fuel_level_pct, extra->>'aemp_running' AS run "
            "FROM readings WHERE machine_id = $1",
            machine["machine_id"],
        )
        assert row["ts"] == value.ts  # whole seconds, as the feed writes them
        assert (row["lat"], row["lon"]) == (value.lat, value.lon)
        assert row["engine_hours"] == value.engine_hours
        assert row["fuel_level_pct"] == value.fuel_level_pct
        assert row["run"] == ("true" if value.engine_speed_rpm else "false")
        assert machine["fuel_tank_l"] == 400.0 + i
    # One fleet view: the pulled machines are served again by our feed, to their new customer.
    async with httpx.AsyncClient(transport=transport, base_url="http://own") as http:
        auth = {**await access_token(http, puller_customer), "Accept": "application/json"}
        served = (await http.get("/aemp/Fleet/1", headers=auth)).json()["Equipment"]
    running = {
        e["EquipmentHeader"]["SerialNumber"]: e.get("EngineStatus", {}).get("Running")
        for e in served
    }
    assert running == {
        f"SN{i:06d}": bool(latest[f"{prefix}-{i:04d}"].engine_speed_rpm) if i < 4 else None
        for i in range(5)
    }
    stored = await pool.fetchval(
        "SELECT last_result FROM aemp_sources WHERE source_id = $1", source.source_id
    )
    assert "0 readings stored, 4 already stored" in stored


def _ts(minutes_ago: int, fraction: str = "") -> str:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=minutes_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _xml_pages() -> dict[str, Page]:
    ns = 'xmlns="http://www.jcmanet.or.jp/english2017/ISO/15143/-3/20190501" version="20190501"'
    page0 = f"""<?xml version="1.0"?>
<Fleet {ns}>
  <Links><rel>self</rel><href>https://zero.example/feed/Fleet/0</href></Links>
  <Links><rel>next</rel><href>/feed/Fleet/1</href></Links>
  <Equipment>
    <EquipmentHeader><UnitInstallDateTime>0001-01-01T00:00:00Z</UnitInstallDateTime>
      <OEMName></OEMName><Model>TB290-2</Model><EquipmentID>7020027516</EquipmentID>
      <SerialNumber>190502863</SerialNumber><PIN>PIN-A</PIN></EquipmentHeader>
    <Location datetime="{_ts(10, ".123")}"><Latitude>49.237090</Latitude>
      <Longitude>8.093496</Longitude></Location>
    <CumulativeOperatingHours><Hour>233.70</Hour><datetime>{_ts(10, ".123")}</datetime>
    </CumulativeOperatingHours>
  </Equipment>
  <Equipment>
    <EquipmentHeader><OEMName>Kramer</OEMName><Model>5075</Model><PIN>PIN-B</PIN>
    </EquipmentHeader>
    <Location datetime="{_ts(20)}" Latitude="50.5" Longitude="12.25"/>
    <FuelRemaining datetime="{_ts(20)}"><Percent>missing</Percent>
      <FuelTankCapacity>0</FuelTankCapacity></FuelRemaining>
    <EngineStatus datetime="{_ts(20)}"><EngineNumber>N/A</EngineNumber><Running>true</Running>
    </EngineStatus>
  </Equipment>
  <Equipment><EquipmentHeader><Model>no identity</Model></EquipmentHeader></Equipment>
</Fleet>"""
    page1 = f"""<Fleet {ns}>
  <Links><rel>first</rel><href>/feed/Fleet/0</href></Links>
  <Links><rel>self</rel><href>/feed/Fleet/1</href></Links>
  <Equipment>
    <EquipmentHeader><SerialNumber>SER-C</SerialNumber></EquipmentHeader>
    <CumulativeOperatingHours datetime="{_ts(30)}"><Hour>N/A</Hour></CumulativeOperatingHours>
    <Location datetime="{_ts(60 * 24 * 60)}"><Latitude>1</Latitude><Longitude>2</Longitude>
    </Location>
    <FuelRemaining datetime="{_ts(30)}"><Percent>42.5</Percent>
      <FuelTankCapacity>310</FuelTankCapacity></FuelRemaining>
  </Equipment>
</Fleet>"""
    xml = "application/xml"
    return {
        "/feed/Fleet/0": (200, xml, page0.encode()),
        "/feed/Fleet/1": (200, xml, page1.encode()),
    }


async def test_xml_dialects_zero_based_pages_child_datetimes_placeholders(
    pool: asyncpg.Pool,
) -> None:
    customer = unique("AEMPZ")
    requested: list[str] = []
    transport = fixture_server(_xml_pages(), requested)
    source = await add_source(pool, customer, base_url="https://zero.example/feed", auth="none")
    result = await pull_source(pool, source, Limits(), transport=transport)
    assert result.error is None, result.summary()
    assert (result.pages, result.machines, result.dead_letters, result.stale) == (2, 3, 1, 1)
    assert requested == ["/feed/Fleet/1", "/feed/Fleet/0"]
    pulled = {m["serial_number"]: m for m in await machines_of(pool, customer)}
    assert set(pulled) == {"PIN-A", "PIN-B", "SER-C"}
    a, b, c = pulled["PIN-A"], pulled["PIN-B"], pulled["SER-C"]
    assert (a["oem"], a["model"], b["oem"], b["model"], c["model"]) == (
        None, "TB290-2", "Kramer", "5075", "unknown",
    )  # fmt: skip
    assert (b["fuel_tank_l"], c["fuel_tank_l"]) == (None, 310.0)
    rows = {
        r["machine_id"]: r
        for r in await pool.fetch(
            "SELECT machine_id, ts, lat, lon, engine_hours, fuel_level_pct, extra FROM readings "
            "WHERE machine_id = ANY($1::text[])",
            [a["machine_id"], b["machine_id"], c["machine_id"]],
        )
    }
    ra, rb, rc = rows[a["machine_id"]], rows[b["machine_id"]], rows[c["machine_id"]]
    assert ra["ts"].microsecond == 123_000  # fractional seconds kept
    assert (ra["lat"], ra["lon"], ra["engine_hours"]) == (49.23709, 8.093496, 233.7)
    assert (rb["lat"], rb["lon"], rb["fuel_level_pct"]) == (50.5, 12.25, None)
    assert orjson.loads(rb["extra"]) == {"aemp_running": True}
    assert (rc["engine_hours"], rc["fuel_level_pct"]) == (None, 42.5)
    letter = await pool.fetchrow(
        "SELECT topic, payload, reason, detail FROM ingest_rejects WHERE source_id = $1",
        source.source_id,
    )
    assert letter["topic"] == f"aemp/{source.source_id}"
    assert letter["reason"] == REASON
    assert b"no identity" in bytes(letter["payload"])
    again = await pull_source(pool, source, Limits(), transport=transport)
    assert (again.readings_inserted, again.readings_duplicate, again.registered) == (0, 3, 0)
    # The same unreadable machine on every poll waits as one dead letter; the stale position
    # is skipped again, never refused.
    assert (again.dead_letters, again.stale) == (0, 1)
    letters = await pool.fetchval(
        "SELECT count(*) FROM ingest_rejects WHERE source_id = $1", source.source_id
    )
    assert letters == 1


async def test_json_dialect_with_links_in_any_casing_behind_basic_auth(pool: asyncpg.Pool) -> None:
    customer = unique("AEMPJ")
    page1 = {
        "Version": "2",
        "links": [
            {"Rel": "self", "Href": "/json/Fleet/1"},
            {"rel": "NEXT", "href": "/json/Fleet/2"},
        ],
        "equipment": [
            {
                "equipmentHeader": {"oemName": "Volvo", "model": "EC220E", "pin": "VCE-1"},
                "location": {"Datetime": _ts(5, ".5"), "latitude": 59.3, "longitude": 18.1},
                "cumulativeOperatingHours": {"datetime": _ts(5, ".5"), "hour": "1200.5"},
            }
        ],
    }
    page2 = {
        "Links": [{"rel": "self", "href": "/json/Fleet/2"},
                  {"rel": "next", "href": "https://elsewhere.example/steal/Fleet/3"}],
        "Equipment": [{"EquipmentHeader": {"SerialNumber": "VCE-2"},
                       "EngineStatus": {"datetime": _ts(6), "Running": False}}],
    }  # fmt: skip
    pages = {
        "/json/Fleet/1": (200, "application/json", orjson.dumps(page1)),
        "/json/Fleet/2": (200, "application/json; charset=utf-8", orjson.dumps(page2)),
    }
    requested: list[str] = []
    transport = fixture_server(pages, requested, basic=("fleet", "s3cret"))
    source = await add_source(
        pool, customer, base_url="https://volvo.example/json", auth="basic",
        username="fleet", secret="s3cret",
    )  # fmt: skip
    result = await pull_source(pool, source, Limits(), transport=transport)
    assert result.error is None, result.summary()
    assert (result.pages, result.machines, result.readings_inserted) == (2, 2, 2)
    assert requested == ["/json/Fleet/1", "/json/Fleet/2"]  # never elsewhere.example
    pulled = {m["serial_number"]: m for m in await machines_of(pool, customer)}
    assert pulled["VCE-1"]["oem"] == "Volvo"
    hours = await pool.fetchval(
        "SELECT engine_hours FROM readings WHERE machine_id = $1", pulled["VCE-1"]["machine_id"]
    )
    assert hours == 1200.5
    wrong = await add_source(
        pool, customer, base_url="https://volvo.example/json", auth="basic",
        username="fleet", secret="wrong",
    )  # fmt: skip
    refused = await pull_source(pool, wrong, Limits(), transport=transport)
    assert refused.error is not None
    assert "401" in refused.error


async def test_what_cannot_be_read_is_a_dead_letter_never_a_crash(pool: asyncpg.Pool) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;">]><Fleet>&lol2;</Fleet>'
    )
    cases: dict[str, Page] = {
        "/html/Fleet/1": (200, "text/html", b"<html><body>Service temporarily unavailable"),
        "/bomb/Fleet/1": (200, "application/xml", bomb),
        "/json/Fleet/1": (200, "application/json", b'{"Equipment": [1, "x", null]'),
        "/other/Fleet/1": (200, "application/xml", b"<Order><Item/></Order>"),
        "/values/Fleet/1": (200, "application/json", orjson.dumps({"Equipment": [
            {"EquipmentHeader": {"PIN": "P\u0000\u0007IN"},
             "Location": {"datetime": "yesterday", "Latitude": 1, "Longitude": 2}},
            {"EquipmentHeader": {"PIN": "FAR"},
             "Location": {"datetime": _ts(1), "Latitude": 4000.0, "Longitude": 2}},
        ]})),
    }  # fmt: skip
    requested: list[str] = []
    transport = fixture_server(cases, requested)
    customer = unique("AEMPU")
    for name in ("html", "bomb", "json", "other"):
        source = await add_source(
            pool, customer, base_url=f"http://bad.example/{name}", auth="none"
        )
        result = await pull_source(pool, source, Limits(), transport=transport)
        assert (result.error, result.dead_letters, result.machines) == (None, 1, 0), name
        payload = await pool.fetchval(
            "SELECT payload FROM ingest_rejects WHERE source_id = $1 AND reason = $2",
            source.source_id,
            REASON,
        )
        assert bytes(payload) == cases[f"/{name}/Fleet/1"][2]
    # A machine with an unreadable time and one out of physical range: both dead letters.
    source = await add_source(pool, customer, base_url="http://bad.example/values", auth="none")
    result = await pull_source(pool, source, Limits(), transport=transport)
    assert (result.error, result.machines, result.dead_letters) == (None, 1, 2), result.summary()
    reasons = await pool.fetch(
        "SELECT reason FROM ingest_rejects WHERE source_id = $1 OR topic LIKE $2 ORDER BY 1",
        source.source_id,
        f"machines/{source.source_id}.%",
    )
    assert [r["reason"] for r in reasons] == [REASON, "out_of_range"]
    # Failures of the server end the poll with their reason.
    gone = await add_source(pool, customer, base_url="http://bad.example/nothing", auth="none")
    result = await pull_source(pool, gone, Limits(), transport=transport)
    assert result.error is not None
    assert "404" in result.error
