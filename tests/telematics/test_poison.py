"""Poison payloads through the real broker, gateway and database, and the replay of dead letters.

A payload that breaks the decoder, or that the store cannot hold, must cost that message alone:
the gateway stays up, the message becomes one dead letter with a reason, and every good reading
beside it in the same database batch is stored. A replay is held to the same rule, letter by
letter.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest

from telematics.ingest.mqtt import MqttEndpoint
from telematics.store.ingest import write_batch
from telematics.wire.decode import DecodedBatch, Limits, decode_message
from tests.conftest import unique
from tests.telematics.harness import (
    api_client,
    count_readings,
    eventually,
    gateway_config,
    now_ms,
    publish,
    register,
    running_gateway,
)

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def poison_payloads(ts: int) -> list[tuple[bytes, str]]:
    """Each poison payload of the issue, with the reason its dead letter must carry."""
    t = str(ts).encode()
    return [
        (b'{"ts": ' + t + b', "x": ' + nested(1100) + b"}", "bad_structure"),
        (b'{"ts": ' + t + b', "x": ' + nested(300) + b"}", "bad_structure"),
        (
            b'{"ts": ' + t + b', "dtc": [{"spn": 100, "fmi": 1, "x": ' + nested(300) + b"}]}",
            "bad_dtc",
        ),
        (b'{"ts": ' + t + b', "\\ud800": 1}', "bad_text"),
        (b'{"ts": ' + t + b', "note": "\\ud800"}', "bad_text"),
        (b'{"ts": ' + t + b', "battery_v": ' + b"9" * 400 + b"}", "out_of_range"),
        (b'{"ts": ' + t + b', "note": "a\\u0000b"}', "bad_text"),
        (b'{"ts": ' + t + b', "a\\u0000b": "note"}', "bad_text"),
    ]


async def letters_of(pool: asyncpg.Pool, source_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT reason, detail FROM ingest_rejects WHERE source_id = $1 ORDER BY reject_id",
        source_id,
    )
    return [(row["reason"], row["detail"]) for row in rows]


async def test_poison_payloads_cost_only_themselves_and_the_gateway_stays_up(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    poisoner, good_a, good_b = unique("EX"), unique("EX"), unique("EX")
    await register(pool, poisoner, good_a, good_b)
    ts = now_ms() - 60_000
    poison = poison_payloads(ts)
    messages: list[tuple[str, bytes | object]] = []
    for i, (payload, _) in enumerate(poison):
        messages.append((f"machines/{good_a}/telemetry", {"ts": ts + i, "battery_v": 27.0}))
        messages.append((f"machines/{poisoner}/telemetry", payload))
        batch = {"readings": [{"ts": ts + 100 * i + j, "fuel_level_pct": 50.0} for j in range(5)]}
        messages.append((f"machines/{good_b}/telemetry", batch))
    # A long flush delay puts every message of the publish into one database batch.
    config = gateway_config(mqtt_endpoint, batch_max_delay_s=0.5)
    async with running_gateway(pool, config) as gateway:
        await publish(mqtt_endpoint, messages)
        expected = [reason for _, reason in poison]

        async def reasons() -> list[str]:
            return [reason for reason, _ in await letters_of(pool, poisoner)]

        assert await eventually(reasons, expected) == expected
        stored = len(poison) * 6
        assert await eventually(count_readings(pool, good_a, good_b), stored) == stored
        assert gateway.connected.is_set()
        # Still up: a reading published after the poison is stored too.
        await publish(mqtt_endpoint, [(f"machines/{good_a}/telemetry", {"ts": ts + 999})])
        assert await eventually(count_readings(pool, good_a, good_b), stored + 1) == stored + 1
    letters = await letters_of(pool, poisoner)
    assert "RecursionError" in letters[0][1]  # the exception that was the cause is named
    assert await count_readings(pool, poisoner)() == 0
    assert await letters_of(pool, good_a) == []
    assert await letters_of(pool, good_b) == []


async def test_text_the_store_cannot_hold_costs_its_message_not_its_batch(
    pool: asyncpg.Pool, mqtt_endpoint: MqttEndpoint
) -> None:
    poisoner, good = unique("EX"), unique("EX")
    await register(pool, poisoner, good)
    ts = now_ms() - 60_000
    messages: list[tuple[str, bytes | object]] = [
        (f"machines/{good}/telemetry", {"ts": ts + i, "coolant_temp_c": 80.0}) for i in range(10)
    ]
    messages.insert(5, (f"machines/{poisoner}/telemetry", {"ts": ts, "note": "a\u0000b"}))
    async with running_gateway(pool, gateway_config(mqtt_endpoint, batch_max_delay_s=0.5)):
        await publish(mqtt_endpoint, messages)

        async def reasons() -> list[str]:
            return [reason for reason, _ in await letters_of(pool, poisoner)]

        assert await eventually(reasons, ["bad_text"]) == ["bad_text"]
        assert await eventually(count_readings(pool, good), 10) == 10
    assert await letters_of(pool, good) == []


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(pool) as http:
        yield http


async def store_errors(pool: asyncpg.Pool, letters: list[tuple[str, bytes]]) -> list[int]:
    """Dead letters as a batch the database refused leaves them: every message `store_error`."""
    ids = []
    for machine_id, payload in letters:
        ids.append(
            await pool.fetchval(
                """INSERT INTO ingest_rejects (topic, source_id, payload, reason, detail)
                   VALUES ($1, $2, $3, 'store_error', 'UntranslatableCharacterError: ...')
                   RETURNING reject_id""",
                f"machines/{machine_id}/telemetry",
                machine_id,
                payload,
            )
        )
    return ids


async def pending(pool: asyncpg.Pool, ids: list[int]) -> dict[int, str]:
    rows = await pool.fetch(
        "SELECT reject_id, reason FROM ingest_rejects "
        "WHERE reject_id = ANY($1::bigint[]) AND replayed_at IS NULL",
        ids,
    )
    return {row["reject_id"]: row["reason"] for row in rows}


async def test_replay_of_store_errors_is_not_blocked_by_one_poison_letter(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    poisoner, good_a, good_b = unique("EX"), unique("EX"), unique("EX")
    await register(pool, poisoner, good_a, good_b)
    ts = now_ms() - 60_000
    ids = await store_errors(
        pool,
        [
            (good_a, orjson.dumps({"ts": ts, "battery_v": 27.0})),
            (poisoner, orjson.dumps({"ts": ts, "note": "a\u0000b"})),
            (
                good_b,
                orjson.dumps({"readings": [{"ts": ts + i, "load_pct": 40} for i in range(3)]}),
            ),
        ],
    )
    replay = await client.post(
        "/v1/ingest/rejects/replay",
        json={"reason": "store_error", "reject_ids": ids},
        headers=AUTH,
    )
    assert replay.status_code == 200, replay.text
    assert replay.json() == {
        "replayed": 3,
        "accepted": 2,
        "refused": 1,
        "readings_inserted": 4,
        "new_rejects": 0,
    }
    assert await count_readings(pool, good_a, good_b)() == 4
    assert await pending(pool, ids) == {ids[1]: "bad_text"}


async def test_a_letter_the_database_refuses_on_replay_is_refused_alone(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    refused, good = unique("EX"), unique("EX")
    await register(pool, refused, good)
    ts = now_ms() - 60_000
    ids = await store_errors(
        pool,
        [
            (good, orjson.dumps({"ts": ts, "battery_v": 27.0})),
            (refused, orjson.dumps({"ts": ts, "battery_v": 27.0})),
            (good, orjson.dumps({"ts": ts + 1, "battery_v": 27.0})),
        ],
    )
    # A refusal the decoder cannot foresee: the database itself says no to one machine's rows.
    name = unique("refuse").replace("-", "_")
    await pool.execute(
        f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.machine_id = '{refused}' THEN RAISE EXCEPTION 'refused by the test'; END IF;
                RETURN NEW;
            END $$"""
    )
    await pool.execute(
        f"CREATE TRIGGER {name} BEFORE INSERT ON readings FOR EACH ROW EXECUTE FUNCTION {name}()"
    )
    try:
        replay = await client.post(
            "/v1/ingest/rejects/replay", json={"reject_ids": ids}, headers=AUTH
        )
    finally:
        await pool.execute(f"DROP TRIGGER {name} ON readings")
        await pool.execute(f"DROP FUNCTION {name}()")
    assert replay.status_code == 200, replay.text
    assert replay.json() == {
        "replayed": 3,
        "accepted": 2,
        "refused": 1,
        "readings_inserted": 2,
        "new_rejects": 0,
    }
    assert await count_readings(pool, good)() == 2
    assert await pending(pool, ids) == {ids[1]: "store_error"}
    detail = await pool.fetchval("SELECT detail FROM ingest_rejects WHERE reject_id = $1", ids[1])
    assert detail.startswith("RaiseError")


_PALETTE = [
    "a",
    "é",
    "\x00",
    "\ud800",
    "\udc00",
    "\ufeff",
    "\U0001f600",
    "\\",
    '"',
    "\u2028",
    "u0000",
]


def _hostile(rng: random.Random, depth: int) -> object:
    """A JSON value from the hostile palette: odd text, numbers at the edges, nesting near 32."""
    roll = rng.random()
    if depth > 0 and roll < 0.3:
        return [_hostile(rng, depth - 1) for _ in range(rng.randint(0, 2))]
    if depth > 0 and roll < 0.5:
        return {_text(rng): _hostile(rng, depth - 1) for _ in range(rng.randint(0, 2))}
    return rng.choice(
        [
            _text(rng),
            2**64 - 1,
            2**64,
            -(2**63) - 1,
            10**308,
            10**400,
            1e308,
            -0.0,
            5e-324,
            True,
            None,
        ]
    )


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_PALETTE) for _ in range(rng.randint(0, 4)))


def _hostile_corpus(ts: int) -> list[bytes]:
    rng = random.Random(20261127)
    corpus = [payload for payload, _ in poison_payloads(ts)]
    for i in range(300):
        reading = {
            "ts": ts + i,
            "battery_v": 27.0,
            _text(rng): _hostile(rng, rng.choice([2, 31, 33])),
        }
        if rng.random() < 0.3:
            reading["dtc"] = [{"spn": 100, "fmi": 1, "lamp": _hostile(rng, 3)}]
        text = json.dumps(reading, ensure_ascii=rng.random() < 0.5)
        corpus.append(text.encode(rng.choice(["utf-8", "utf-16", "utf-8-sig"]), "surrogatepass"))
    return corpus


async def test_whatever_the_decoder_accepts_the_store_holds(pool: asyncpg.Pool) -> None:
    machine = unique("EX")
    await register(pool, machine)
    ts = now_ms() - 60_000
    batch = DecodedBatch()
    for payload in _hostile_corpus(ts):
        decode_message(
            f"machines/{machine}/telemetry",
            payload,
            now_ms=now_ms(),
            limits=Limits(),
            known_machines={machine},
            known_engineers=set(),
            out=batch,
        )
    accepted = len(batch.readings)
    assert 50 < accepted < 300  # the corpus holds both kinds
    async with pool.acquire() as conn:
        result = await write_batch(conn, batch)  # one batch: any refusal would fail it whole
    assert result.readings_inserted == accepted
    assert result.rejects == len(batch.rejects)
