"""Wire contract v1 decoding: pure, no services."""

from __future__ import annotations

import math

import orjson
import pytest

from diagnosis.signals import SIGNAL_INDEX
from telematics.wire.decode import DecodedBatch, Limits, RejectReason, decode_message

NOW_MS = 1_790_000_000_000
LIMITS = Limits()
TOPIC = "machines/EX-1/telemetry"


def decode(payload: bytes | object, topic: str = TOPIC, **kw: object) -> DecodedBatch:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    out = DecodedBatch()
    decode_message(
        topic,
        raw,
        now_ms=NOW_MS,
        limits=kw.get("limits", LIMITS),  # type: ignore[arg-type]
        known_machines={"EX-1"},
        known_engineers={"ENG-1"},
        out=out,
    )
    return out


def only_reason(out: DecodedBatch) -> RejectReason:
    assert len(out.readings) == 0
    assert len(out.rejects) == 1
    return out.rejects[0].reason


def test_single_reading_with_epoch_ms_goes_into_columns() -> None:
    out = decode({"ts": NOW_MS, "engine_speed_rpm": 1800, "oil_pressure_kpa": 350.5})
    assert out.readings.ts_ms == [NOW_MS]
    assert out.readings.machine_ids == ["EX-1"]
    assert out.readings.values[SIGNAL_INDEX["engine_speed_rpm"]] == [1800.0]
    assert out.readings.values[SIGNAL_INDEX["oil_pressure_kpa"]] == [350.5]
    assert math.isnan(out.readings.values[SIGNAL_INDEX["coolant_temp_c"]][0])
    assert not out.rejects


def test_rfc3339_timestamp_with_offset_is_accepted() -> None:
    # NOW_MS is 2026-09-21T14:13:20Z.
    out = decode({"ts": "2026-09-21T22:13:20.250+08:00", "fuel_level_pct": 50})
    out2 = decode({"ts": "2026-09-21T14:13:20Z", "fuel_level_pct": 50})
    assert out.readings.ts_ms == [NOW_MS + 250]
    assert out2.readings.ts_ms == [NOW_MS]


def test_batch_of_readings_and_unknown_keys_are_kept() -> None:
    readings = [{"ts": NOW_MS - i, "battery_v": 27.1, "firmware": "1.2"} for i in range(20)]
    out = decode({"readings": readings})
    assert len(out.readings) == 20
    assert orjson.loads(out.readings.extra[0] or "{}") == {"firmware": "1.2"}


def test_dtc_list_is_kept_as_json() -> None:
    out = decode({"ts": NOW_MS, "dtc": [{"spn": 100, "fmi": 1, "oc": 3}]})
    assert orjson.loads(out.readings.dtc[0] or "[]") == [{"spn": 100, "fmi": 1, "oc": 3}]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not json", RejectReason.NOT_JSON),
        (b'{"ts": 1, "oil_pressure_kpa": NaN}', RejectReason.NOT_FINITE),
        (b'{"ts": 1, "oil_pressure_kpa": Infinity}', RejectReason.NOT_FINITE),
        ({"ts": NOW_MS, "oil_pressure_kpa": "350"}, RejectReason.WRONG_TYPE),
        ({"ts": NOW_MS, "oil_pressure_kpa": True}, RejectReason.WRONG_TYPE),
        ({"ts": NOW_MS, "oil_pressure_kpa": 5000}, RejectReason.OUT_OF_RANGE),
        ({"ts": NOW_MS, "lat": 91}, RejectReason.OUT_OF_RANGE),
        ({"ts": NOW_MS + 6 * 60 * 1000}, RejectReason.TS_IN_FUTURE),
        ({"ts": NOW_MS - 31 * 24 * 3600 * 1000}, RejectReason.TS_TOO_OLD),
        ({"ts": "yesterday"}, RejectReason.BAD_TIMESTAMP),
        ({"ts": "2026-09-21T17:33:20"}, RejectReason.BAD_TIMESTAMP),
        ({"engine_speed_rpm": 800}, RejectReason.BAD_TIMESTAMP),
        ({"ts": NOW_MS, "dtc": [{"spn": 100}]}, RejectReason.BAD_DTC),
        ({"ts": NOW_MS, "dtc": "P0100"}, RejectReason.BAD_DTC),
        ({"ts": NOW_MS, "machine_id": "EX-2"}, RejectReason.MACHINE_ID_MISMATCH),
        ({"machine_id": "EX-2", "readings": [{"ts": NOW_MS}]}, RejectReason.MACHINE_ID_MISMATCH),
        ({"readings": [{"ts": NOW_MS}] * 1001}, RejectReason.TOO_MANY_READINGS),
        ({"readings": []}, RejectReason.BAD_STRUCTURE),
        ([1, 2, 3], RejectReason.BAD_STRUCTURE),
    ],
)
def test_bad_payload_is_dead_lettered_with_its_reason(
    payload: object, reason: RejectReason
) -> None:
    out = decode(payload)
    assert only_reason(out) is reason
    assert out.rejects[0].source_id == "EX-1"


def test_payload_over_the_size_limit_is_refused() -> None:
    out = decode({"ts": NOW_MS, "pad": "x" * 2000}, limits=Limits(max_payload_bytes=1024))
    assert only_reason(out) is RejectReason.PAYLOAD_TOO_LARGE


def test_unknown_machine_is_refused_whole() -> None:
    out = decode({"ts": NOW_MS}, topic="machines/EX-9/telemetry")
    assert only_reason(out) is RejectReason.UNKNOWN_MACHINE


def test_foreign_topic_is_refused() -> None:
    out = decode({"ts": NOW_MS}, topic="machines/EX 1/telemetry")
    assert only_reason(out) is RejectReason.BAD_TOPIC


def test_one_bad_reading_in_a_batch_costs_only_itself() -> None:
    readings = [{"ts": NOW_MS - i, "coolant_temp_c": 90} for i in range(5)]
    readings[2]["coolant_temp_c"] = 900
    out = decode({"readings": readings})
    assert len(out.readings) == 4
    assert [r.reason for r in out.rejects] == [RejectReason.OUT_OF_RANGE]
    assert "reading 2 of 5" in out.rejects[0].detail
    assert orjson.loads(out.rejects[0].payload) == readings[2]


def test_engineer_position_is_decoded() -> None:
    out = decode({"ts": NOW_MS, "lat": 31.2, "lon": 121.5}, topic="engineers/ENG-1/position")
    assert out.positions.engineer_ids == ["ENG-1"]
    assert (out.positions.lat, out.positions.lon) == ([31.2], [121.5])


def test_position_from_unknown_engineer_is_refused() -> None:
    out = decode({"ts": NOW_MS, "lat": 1, "lon": 2}, topic="engineers/ENG-2/position")
    assert only_reason(out) is RejectReason.UNKNOWN_ENGINEER
