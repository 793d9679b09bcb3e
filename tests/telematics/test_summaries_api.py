"""Summary routes under hostile and odd requests: every bad input a clear 4xx, scoping held."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from telematics.store.registry import add_machine
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    mine, theirs = unique("SA"), unique("SB")
    customer, other = unique("CA"), unique("CB")
    async with pool.acquire() as conn:
        await add_machine(conn, mine, "excavator", customer, None)
        await add_machine(conn, theirs, "excavator", other, None)
        _, own = await create_token(conn, Role.CUSTOMER, customer, "own")
        engineer = unique("E")
        await conn.execute("INSERT INTO engineers (engineer_id, name) VALUES ($1, 'E')", engineer)
        _, eng = await create_token(conn, Role.ENGINEER, engineer, "eng")
    async with api_client(pool) as http:
        yield (
            http,
            {
                "mine": mine,
                "theirs": theirs,
                "customer": customer,
                "other": other,
                "own": own,
                "eng": eng,
            },
        )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "params",
    [
        {"tz": "Mars/Olympus"},
        {"tz": "localtime"},
        {"tz": "../../etc/passwd"},
        {"tz": "x" * 65},
        {"period": "year"},
        {"from": "2026-11-30", "to": "2026-11-01"},
        {"from": "2025-01-01", "to": "2026-11-30"},
        {"from": "1900-01-01", "to": "1900-01-02"},
        {"from": "junk"},
        {"to": "99999-01-01"},
        {"to": "0001-01-05"},  # the default 30 days would start before the calendar
        {"to": "0001-01-01"},
        {"format": "xml"},
    ],
)
async def test_bad_filters_answer_422_problem_json(
    world: tuple[httpx.AsyncClient, dict[str, str]], params: dict[str, str]
) -> None:
    http, ids = world
    for path in (f"/v1/machines/{ids['mine']}/summary", "/v1/fleet/summary"):
        answer = await http.get(path, params=params, headers=auth(ids["own"]))
        assert answer.status_code == 422, (path, params, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")


async def test_nul_in_the_zone_is_refused_before_routing(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, ids = world
    answer = await http.get(f"/v1/machines/{ids['mine']}/summary?tz=UTC%00", headers=ADMIN)
    assert answer.status_code == 400


async def test_a_customer_sees_and_sets_only_its_own(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, ids = world
    own = auth(ids["own"])
    assert (await http.get(f"/v1/machines/{ids['theirs']}/summary", headers=own)).status_code == 404
    assert (await http.get("/v1/machines/NOPE-404/summary", headers=ADMIN)).status_code == 404
    other_settings = f"/v1/customers/{ids['other']}/settings"
    assert (await http.get(other_settings, headers=own)).status_code == 404
    put = await http.put(other_settings, json={"tz": "UTC"}, headers=own)
    assert put.status_code == 404
    # Asking for another customer's fleet answers the caller's own.
    fleet = await http.get("/v1/fleet/summary", params={"customer_id": ids["other"]}, headers=own)
    assert fleet.status_code == 200
    assert fleet.json()["customer_id"] == ids["customer"]
    assert [m["machine_id"] for m in fleet.json()["per_machine"]] == [ids["mine"]]
    assert (await http.get("/v1/fleet/summary", headers=auth(ids["eng"]))).status_code == 403
    assert (await http.get("/v1/fleet/summary", headers=ADMIN)).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"tz": "Nowhere/City"},
        {"tz": "localtime"},  # a file of the zone folder: the host's zone, not a place
        {"tz": "posixrules"},
        {"tz": "UTC", "shift_hours_per_day": 0},
        {"tz": "UTC", "shift_hours_per_day": 25},
        {"tz": "UTC", "shift_hours_per_day": "8"},
        {"tz": "UTC", "extra": 1},
        {"tz": "UTC\u0000"},
        {"tz": ""},
        {},
    ],
)
async def test_bad_settings_answer_422(
    world: tuple[httpx.AsyncClient, dict[str, str]], body: dict[str, object]
) -> None:
    http, ids = world
    answer = await http.put(f"/v1/customers/{ids['customer']}/settings", json=body, headers=ADMIN)
    assert answer.status_code == 422, (body, answer.text)


async def test_an_overlong_customer_id_is_422_for_reads_as_for_writes(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, _ = world
    path = f"/v1/customers/{'C' * 201}/settings"
    for answer in (
        await http.get(path, headers=ADMIN),
        await http.put(path, json={"tz": "UTC"}, headers=ADMIN),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "too long" in answer.json()["detail"]
    assert (await http.get(f"/v1/customers/{'C' * 200}/settings", headers=ADMIN)).is_success


async def test_settings_round_trip_and_empty_buckets_are_zero(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, ids = world
    own = auth(ids["own"])
    path = f"/v1/customers/{ids['customer']}/settings"
    assert (await http.get(path, headers=own)).json()["tz"] == "UTC"
    put = await http.put(
        path, json={"tz": "Asia/Kathmandu", "shift_hours_per_day": 10}, headers=own
    )
    assert put.json() == {
        "customer_id": ids["customer"],
        "tz": "Asia/Kathmandu",
        "shift_hours_per_day": 10.0,
    }
    answer = await http.get(
        f"/v1/machines/{ids['mine']}/summary",
        params={"period": "week", "from": "2026-11-04", "to": "2026-11-19"},
        headers=own,
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["tz"] == "Asia/Kathmandu"
    starts = [b["start"][:10] for b in body["buckets"]]
    assert starts == ["2026-11-04", "2026-11-09", "2026-11-16"]  # cut at from, then Mondays
    assert body["buckets"][0]["start"].endswith("+05:45")
    assert body["buckets"][-1]["end"][:10] == "2026-11-20"
    for b in body["buckets"]:
        assert (b["working_hours"], b["coverage_pct"], b["first_start"]) == (0, 0, None)
        assert b["hours_by_hour"] == [0.0] * 24
    csv_answer = await http.get(
        f"/v1/machines/{ids['mine']}/summary",
        params={"from": "2026-11-01", "to": "2026-11-03", "format": "csv"},
        headers=own,
    )
    assert csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.text.strip().split("\n")
    assert lines[0].startswith("start,end,engine_hours")
    assert len(lines) == 4
