"""Surveys and the satisfaction index over HTTP: the instrument, answers in, a month's index out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest

from diagnosis.knowledge import KnowledgeBase
from dispatch.orders import Accept, Arrive, Complete, StartTravel
from dispatch.sla import SlaPolicy
from telematics.quality.index import answer_matrix, period_index
from telematics.quality.instrument import load
from telematics.services.dispatching import act, dispatch_alarm
from telematics.services.sla_worker import fire_due
from telematics.store.tokens import Role, create_token
from tests.conftest import unique
from tests.telematics.harness import ADMIN_TOKEN, api_client
from tests.telematics.test_orders import build, raise_alarm

KB = KnowledgeBase.load()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ACSI = load()


def acsi_answers(n: int, seed: int) -> list[dict[str, int]]:
    """Answers from an ACSI-shaped structural model, 1-10, about one in ten left out."""
    rng = np.random.default_rng(seed)
    e = lambda: rng.standard_normal(n)  # noqa: E731
    xi = e()
    pq = 0.5 * xi + 0.8 * e()
    pv = 0.3 * xi + 0.5 * pq + 0.7 * e()
    sat = 0.2 * xi + 0.4 * pq + 0.3 * pv + 0.6 * e()
    cmp = 0.5 * sat + 0.8 * e()
    loy = 0.5 * sat + 0.2 * cmp + 0.7 * e()
    latent = dict(zip(ACSI.construct_names(), (xi, pq, pv, sat, cmp, loy), strict=True))
    out: list[dict[str, int]] = [{} for _ in range(n)]
    for c in ACSI.constructs:
        for item in c.items:
            scores = np.clip(np.rint(6.5 + 1.4 * (latent[c.name] + 0.5 * e())), 1, 10)
            for r in range(n):
                if rng.random() > 0.1:
                    out[r][item.item] = int(scores[r])
    return [a if a else {"sat_overall": 7} for a in out]


async def test_the_instrument_is_shipped_and_replaceable(pool: asyncpg.Pool) -> None:
    async with api_client(pool) as http:
        got = await http.get("/v1/satisfaction/instrument", headers=ADMIN)
        assert got.status_code == 200
        doc = got.json()
        assert doc["index"] == "satisfaction"
        assert [c["name"] for c in doc["constructs"]] == list(ACSI.construct_names())
        assert doc["constructs"][1]["items"][0]["text_zh"] == "工程师到达是否及时\uff1f"
        body = {k: v for k, v in doc.items() if k != "version"}
        bad_cases = [
            {**body, "paths": [*body["paths"], ["loyalty", "expectations"]]},  # a cycle
            {**body, "paths": [*body["paths"], ["loyalty", "nothing"]]},
            {**body, "index": "nothing"},
            {**body, "constructs": body["constructs"][:1]},
            {**body, "paths": [p for p in body["paths"] if "complaints" not in p]},
            {**body, "constructs": [*body["constructs"], body["constructs"][0]]},
            {**body, "constructs": [{"name": "a\u0000", "items": []}, *body["constructs"]]},
        ]
        for bad in bad_cases:
            refused = await http.put("/v1/satisfaction/instrument", json=bad, headers=ADMIN)
            assert refused.status_code == 422, (refused.text, bad)
            assert refused.headers["content-type"].startswith("application/problem+json")
        body["constructs"][0]["items"][0]["text_en"] = "How high were your expectations?"
        put = await http.put("/v1/satisfaction/instrument", json=body, headers=ADMIN)
        assert put.status_code == 200, put.text
        again = (await http.get("/v1/satisfaction/instrument", headers=ADMIN)).json()
        assert again["version"] == put.json()["version"] is not None
        assert again["constructs"][0]["items"][0]["text_en"] == "How high were your expectations?"


async def test_the_index_of_a_month_is_computed_from_posted_surveys(pool: asyncpg.Pool) -> None:
    region = unique("R")
    march = datetime(2024, 3, 1, tzinfo=UTC)
    answers = acsi_answers(60, seed=3)
    async with api_client(pool) as http:
        for k, a in enumerate(answers):
            posted = await http.post("/v1/surveys", headers=ADMIN, json={
                "customer_id": unique("SC"), "region": region, "channel": "phone",
                "answered_at": (march + timedelta(hours=11 * k)).isoformat(), "answers": a,
            })  # fmt: skip
            assert posted.status_code == 201, posted.text
        for k in range(5):  # April: too few to estimate
            await http.post("/v1/surveys", headers=ADMIN, json={
                "customer_id": "SC-x", "region": region, "channel": "sms",
                "answered_at": f"2024-04-0{k + 1}T08:00:00+08:00", "answers": answers[k],
            })  # fmt: skip
        got = await http.get("/v1/satisfaction", headers=ADMIN, params={
            "period": "month", "from": "2024-03-01T00:00:00Z", "to": "2024-05-01T00:00:00Z",
            "region": region,
        })  # fmt: skip
        assert got.status_code == 200, got.text
        march_out, april_out = got.json()["periods"]
        quarter = await http.get("/v1/satisfaction", headers=ADMIN, params={
            "period": "quarter", "from": "2024-01-01T00:00:00Z", "to": "2024-07-01T00:00:00Z",
            "region": region,
        })  # fmt: skip
    want = period_index(answer_matrix(answers, ACSI.items), ACSI, resamples=200,
                        seed=int(march.timestamp()))  # fmt: skip
    assert march_out["period_start"] == "2024-03-01T00:00:00Z"
    assert march_out["n"] == 60
    assert march_out["refused"] is None
    assert march_out["index"] == round(want.index, 3)
    assert 40 < march_out["index"] < 80
    lo, hi = march_out["index_ci_95"]
    assert lo < march_out["index"] < hi
    assert sum(march_out["index_weights"].values()) == pytest.approx(1.0, abs=1e-9)
    assert set(march_out["index_weights"]) == {"sat_overall", "sat_expectations", "sat_ideal"}
    assert {(p["from"], p["to"]) for p in march_out["paths"]} == set(ACSI.paths)
    assert set(march_out["r_squared"]) == {
        "perceived_quality", "perceived_value", "satisfaction", "complaints", "loyalty",
    }  # fmt: skip
    assert april_out["n"] == 5
    assert april_out["index"] is None
    assert "too few answers" in april_out["refused"]
    q1, q2 = quarter.json()["periods"]
    assert (q1["n"], q2["n"]) == (60, 5)


async def _completed_order(pool: asyncpg.Pool) -> tuple[int, str]:
    policy = SlaPolicy()
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm = await raise_alarm(conn, w.machine_id)
    t0 = datetime.now(UTC) - timedelta(hours=30)
    made = await dispatch_alarm(pool, KB, policy, alarm, actor="t", engineer_id=None, note="",
                                now=t0)  # fmt: skip
    oid = made.order.order_id
    for i, command in enumerate((Accept(), StartTravel(), Arrive(), Complete())):
        await act(pool, policy, oid, command, actor="t", now=t0 + timedelta(minutes=10 * (i + 1)))
    return oid, w.customer_id


async def test_a_customer_answers_its_own_order_once_and_sees_only_its_own(
    pool: asyncpg.Pool,
) -> None:
    oid, customer = await _completed_order(pool)
    other_oid, _ = await _completed_order(pool)
    # The post-completion callback came due (24 h after completion): a desk task.
    await fire_due(pool, worker_id="s")
    async with pool.acquire() as conn:
        _, token = await create_token(conn, Role.CUSTOMER, customer, "c")
    me = {"Authorization": f"Bearer {token}"}
    now = datetime.now(UTC).isoformat()
    survey = {"customer_id": customer, "order_id": oid, "channel": "app", "answered_at": now,
              "answers": {"sat_overall": 9, "pq_timeliness": 8}}  # fmt: skip
    async with api_client(pool) as http:
        assert (await http.get("/v1/satisfaction/instrument", headers=me)).status_code == 200
        posted = await http.post("/v1/surveys", json=survey, headers=me)
        assert posted.status_code == 201, posted.text
        assert posted.json()["engineer_id"] is not None  # from the order
        assert (await http.post("/v1/surveys", json=survey, headers=me)).status_code == 409
        callback = await http.get("/v1/desk/tasks", headers=ADMIN, params={
            "order_id": oid, "kind": "post_completion_callback", "state": "all"})  # fmt: skip
        (task,) = callback.json()
        assert task["state"] == "done"
        assert task["result"]["said"].startswith("survey ")
        theirs = await http.post("/v1/surveys", json={**survey, "order_id": other_oid}, headers=me)
        assert theirs.status_code == 404
        for bad, code in (
            ({**survey, "order_id": None}, 422),
            ({**survey, "customer_id": "someone-else"}, 422),
            ({**survey, "answers": {"sat_overall": 11}}, 422),
            ({**survey, "answers": {"sat_overall": 0}}, 422),
            ({**survey, "answers": {"sat_overall": "9"}}, 422),
            ({**survey, "answers": {"sat_overall": True}}, 422),
            ({**survey, "answers": {"no_such_item": 5}}, 422),
            ({**survey, "answers": {"sat\u0000": 5}}, 422),
            ({**survey, "answers": {}}, 422),
            ({**survey, "answered_at": "2999-01-01T00:00:00Z"}, 422),
            ({**survey, "answered_at": "2024-01-01T00:00:00"}, 422),
            ({**survey, "channel": "pigeon"}, 422),
            ({**survey, "order_id": 2**63}, 422),
        ):
            refused = await http.post("/v1/surveys", json=bad, headers=me)
            assert refused.status_code == code, (bad, refused.text)
        mine = await http.get("/v1/satisfaction", headers=me, params={"customer_id": "other"})
        assert mine.status_code == 200
        assert sum(p["n"] for p in mine.json()["periods"]) == 1  # its own answer only
        open_oid, open_customer = await _dispatched_only(pool)
        not_done = await http.post("/v1/surveys", headers=ADMIN, json={
            **survey, "order_id": open_oid, "customer_id": open_customer,
        })  # fmt: skip
        assert not_done.status_code == 409
        not_theirs = await http.post("/v1/surveys", headers=ADMIN, json={
            **survey, "order_id": open_oid, "customer_id": customer,
        })  # fmt: skip
        assert not_theirs.status_code == 422
        span = await http.get("/v1/satisfaction", headers=ADMIN, params={
            "from": "1900-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"})  # fmt: skip
        assert span.status_code == 422
        backwards = await http.get("/v1/satisfaction", headers=ADMIN, params={
            "from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"})  # fmt: skip
        assert backwards.status_code == 422


async def _dispatched_only(pool: asyncpg.Pool) -> tuple[int, str]:
    async with pool.acquire() as conn:
        w = await build(conn)
        alarm = await raise_alarm(conn, w.machine_id)
    made = await dispatch_alarm(pool, KB, SlaPolicy(), alarm, actor="t", engineer_id=None, note="")
    return made.order.order_id, w.customer_id
