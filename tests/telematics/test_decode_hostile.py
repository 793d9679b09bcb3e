"""The decoder as the boundary of untrusted input: hostile payloads, pure, no services.

Whatever bytes arrive, `decode_message` never raises; each message ends as accepted rows or as
dead letters with a reason, never both for the same reading; and whatever it accepts is text and
numbers the store can hold (no NUL, no lone surrogates, bounded nesting, finite numbers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Container, Iterator

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telematics.wire.decode import (
    MAX_EXTRA_DEPTH,
    DecodedBatch,
    Limits,
    RejectReason,
    decode_message,
)

NOW_MS = 1_790_000_000_000
LIMITS = Limits()
TOPIC = "machines/EX-1/telemetry"


def decode(
    payload: bytes | object, topic: str = TOPIC, known: Container[str] = frozenset({"EX-1"})
) -> DecodedBatch:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    out = DecodedBatch()
    decode_message(
        topic,
        raw,
        now_ms=NOW_MS,
        limits=LIMITS,
        known_machines=known,
        known_engineers={"ENG-1"},
        out=out,
    )
    return out


def only_reject(out: DecodedBatch) -> tuple[RejectReason, str]:
    assert len(out.readings) == 0
    assert len(out.rejects) == 1
    return out.rejects[0].reason, out.rejects[0].detail


def nested(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def reading(extra: bytes) -> bytes:
    return b'{"ts": ' + str(NOW_MS).encode() + b", " + extra + b"}"


# -- each hostile case, with its reason ----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (nested(1100), RejectReason.BAD_STRUCTURE),
        (reading(b'"x": ' + nested(1100)), RejectReason.BAD_STRUCTURE),
        (reading(b'"x": ' + nested(300)), RejectReason.BAD_STRUCTURE),
        (reading(b'"x": ' + nested(MAX_EXTRA_DEPTH + 1)), RejectReason.BAD_STRUCTURE),
        (reading(b'"x": {"y": ' + nested(MAX_EXTRA_DEPTH) + b"}"), RejectReason.BAD_STRUCTURE),
        (
            reading(b'"dtc": [{"spn": 1, "fmi": 1, "x": ' + nested(300) + b"}]"),
            RejectReason.BAD_DTC,
        ),
        (reading(b'"dtc": [{"spn": ' + nested(900) + b', "fmi": 1}]'), RejectReason.BAD_DTC),
        (reading(b'"\\ud800": 1'), RejectReason.BAD_TEXT),
        (reading(b'"x": "\\udfff"'), RejectReason.BAD_TEXT),
        (reading(b'"x": {"y": ["\\ud800\\ud800"]}'), RejectReason.BAD_TEXT),
        (reading(b'"x": "a\\u0000b"'), RejectReason.BAD_TEXT),
        (reading(b'"a\\u0000b": 1'), RejectReason.BAD_TEXT),
        (reading(b'"x": [{"a\\u0000": 1}]'), RejectReason.BAD_TEXT),
        (reading(b'"dtc": [{"spn": 1, "fmi": 1, "lamp": "\\u0000"}]'), RejectReason.BAD_TEXT),
        (reading(b'"battery_v": ' + b"9" * 400), RejectReason.OUT_OF_RANGE),
        (reading(b'"battery_v": -' + b"9" * 5000), RejectReason.OUT_OF_RANGE),
        (reading(b'"x": ' + b"9" * 400), RejectReason.OUT_OF_RANGE),
        (reading(b'"x": 1e400'), RejectReason.OUT_OF_RANGE),
        (b'{"ts": ' + b"9" * 400 + b"}", RejectReason.OUT_OF_RANGE),
        (reading(b'"x": NaN'), RejectReason.NOT_FINITE),
        (b"\xff\xfe\x00garbage", RejectReason.NOT_JSON),
        (b'{"ts": 1, "x": "\xed\xa0\x80"}', RejectReason.NOT_JSON),  # a surrogate, UTF-8 encoded
        (b'{"ts": "\\u0000"}', RejectReason.BAD_TIMESTAMP),
        (reading(b'"machine_id": ' + nested(900)), RejectReason.MACHINE_ID_MISMATCH),
    ],
)
def test_hostile_payload_is_one_dead_letter_with_its_reason(
    payload: bytes, reason: RejectReason
) -> None:
    got, detail = only_reject(decode(payload))
    assert got is reason, detail
    assert_storable(detail)
    assert len(detail) <= 1000


def test_nesting_beyond_the_parser_names_the_exception() -> None:
    _, detail = only_reject(decode(nested(1100)))
    assert "RecursionError" in detail


def test_extra_nested_to_the_limit_is_kept() -> None:
    out = decode(reading(b'"x": ' + nested(MAX_EXTRA_DEPTH, b"1")))
    assert not out.rejects
    assert orjson.loads(out.readings.extra[0] or "{}") == {"x": json.loads(nested(32, b"1"))}


@pytest.mark.parametrize(
    "payload",
    [
        b"\xef\xbb\xbf" + reading(b'"battery_v": 27'),
        reading(b'"battery_v": 27').decode().encode("utf-16"),
        reading(b'"battery_v": 27').decode().encode("utf-16-le"),
        reading(b'"battery_v": 27').decode().encode("utf-32"),
    ],
)
def test_byte_order_marks_and_utf16_are_read_as_their_text(payload: bytes) -> None:
    out = decode(payload)
    assert not out.rejects
    assert len(out.readings) == 1


def test_text_with_escapes_that_are_not_nul_is_kept() -> None:
    # A backslash, then "u0000", is text the store can hold: only a real NUL is refused.
    out = decode({"ts": NOW_MS, "path": "C:\\u0000", "emoji": "\U0001f600"})
    assert not out.rejects
    assert orjson.loads(out.readings.extra[0] or "{}")["path"] == "C:\\u0000"


def test_unstorable_reading_in_a_batch_costs_only_itself() -> None:
    readings = [{"ts": NOW_MS - i, "battery_v": 27.0} for i in range(6)]
    readings[1]["note"] = "a\u0000b"
    out = decode({"readings": readings})
    assert len(out.readings) == 5
    assert [r.reason for r in out.rejects] == [RejectReason.BAD_TEXT]
    assert "reading 1 of 6" in out.rejects[0].detail
    assert orjson.loads(out.rejects[0].payload) == readings[1]


def test_reading_too_deep_to_re_encode_is_dead_lettered_with_the_whole_payload() -> None:
    good = [b'{"ts": ' + str(NOW_MS - i).encode() + b', "battery_v": 27}' for i in range(3)]
    deep = reading(b'"x": ' + nested(600))
    payload = b'{"readings": [' + b", ".join([*good, deep]) + b"]}"
    out = decode(payload)
    assert len(out.readings) == 3
    assert [r.reason for r in out.rejects] == [RejectReason.BAD_STRUCTURE]
    assert out.rejects[0].payload == payload
    assert "reading 3 of 4" in out.rejects[0].detail


class _Exploding:
    """A registry lookup that fails: stands for any bug the decoder did not foresee."""

    def __contains__(self, item: object) -> bool:
        raise LookupError("\u0000 the registry broke \ud800")


def test_an_unexpected_exception_becomes_the_messages_dead_letter() -> None:
    out = decode({"ts": NOW_MS}, known=_Exploding())
    reason, detail = only_reject(out)
    assert reason is RejectReason.DECODE_ERROR
    assert detail.startswith("LookupError")
    assert_storable(detail)


class _FailingList(list[str | None]):
    """A column whose append fails: a fault in the middle of appending one reading."""

    def append(self, value: str | None) -> None:
        raise MemoryError


def test_an_unexpected_exception_takes_back_what_the_message_had_appended() -> None:
    out = decode({"ts": NOW_MS - 1, "battery_v": 27})
    out.readings.extra = _FailingList(out.readings.extra)
    decode_message(
        TOPIC,
        orjson.dumps({"readings": [{"ts": NOW_MS - i, "note": "x"} for i in range(2, 5)]}),
        now_ms=NOW_MS,
        limits=LIMITS,
        known_machines={"EX-1"},
        known_engineers=set(),
        out=out,
    )
    assert len(out.readings) == 1
    assert all(len(column) == 1 for column in out.readings.values)
    assert (len(out.readings.machine_ids), len(out.readings.dtc), len(out.readings.extra)) == (
        1,
        1,
        1,
    )
    assert [r.reason for r in out.rejects] == [RejectReason.DECODE_ERROR]
    assert out.rejects[0].detail.startswith("MemoryError")


def test_a_foreign_topic_with_a_nul_is_stored_escaped() -> None:
    out = decode({"ts": NOW_MS}, topic="machines/\u0000/telemetry")
    assert out.rejects[0].reason is RejectReason.BAD_TOPIC
    assert_storable(out.rejects[0].topic)
    assert_storable(out.rejects[0].detail)


# -- properties ----------------------------------------------------------------------------------


def assert_storable(text: str) -> None:
    """Text PostgreSQL can hold in `text` and `jsonb`: valid UTF-8 without NUL."""
    assert "\x00" not in text
    text.encode("utf-8")  # raises on a lone surrogate


def walk(value: object, depth: int = 0) -> Iterator[tuple[object, int]]:
    yield value, depth
    if isinstance(value, dict):
        for key, child in value.items():
            yield key, depth + 1
            yield from walk(child, depth + 1)
    elif isinstance(value, list):
        for child in value:
            yield from walk(child, depth + 1)


def assert_holdable(out: DecodedBatch) -> None:
    readings = out.readings
    n = len(readings)
    assert len(readings.machine_ids) == len(readings.dtc) == len(readings.extra) == n
    assert all(len(column) == n for column in readings.values)
    for column in readings.values:
        assert all(type(v) is float and not math.isinf(v) for v in column)
    assert all(-(2**63) <= ts < 2**63 for ts in readings.ts_ms)
    for text in [*readings.dtc, *readings.extra]:
        if text is None:
            continue
        assert_storable(text)
        for node, depth in walk(orjson.loads(text)):
            assert depth <= MAX_EXTRA_DEPTH + 1  # the extra object itself, then its values
            if isinstance(node, str):
                assert_storable(node)
            if isinstance(node, float):
                assert math.isfinite(node)
    positions = out.positions
    assert len(positions.engineer_ids) == len(positions.lat) == len(positions.lon) == len(positions)
    for reject in out.rejects:
        assert isinstance(reject.reason, RejectReason)
        assert type(reject.payload) is bytes
        assert_storable(reject.topic)
        assert_storable(reject.detail)


hostile_text = st.text(
    st.sampled_from(
        ["a", "é", "\x00", "\ud800", "\udc00", "\ufeff", "\U0001f600", "\\", '"', "\n"]
    ),
    max_size=6,
)
hostile_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(),  # NaN and infinities included; json.dumps writes them as NaN and Infinity
    st.integers(min_value=NOW_MS - 10**6, max_value=NOW_MS + 10**6),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_text),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=12,
)
keys = st.one_of(
    st.sampled_from(["ts", "battery_v", "lat", "dtc", "machine_id", "readings", "note"]),
    hostile_text,
)
readings = st.dictionaries(keys, json_values, max_size=5).map(
    lambda r: {"ts": NOW_MS, **r} if "ts" not in r else r
)
documents = st.one_of(
    readings,
    st.lists(readings, min_size=1, max_size=6).map(lambda rs: {"readings": rs}),
    json_values,
)
encodings = st.sampled_from(["ascii", "utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
deep_depths = st.sampled_from([31, 32, 33, 255, 256, 1023, 1024, 1025, 3000])


def serialise(doc: object, encoding: str) -> bytes:
    text = json.dumps(doc, ensure_ascii=encoding == "ascii")
    return text.encode("utf-8" if encoding == "ascii" else encoding, "surrogatepass")


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Hostile payload bytes: JSON of any shape and encoding, deep nesting spliced in, or junk."""
    kind = draw(st.sampled_from(["json", "deep", "junk"]))
    if kind == "junk":
        return draw(st.binary(max_size=64))
    doc = draw(documents)
    raw = serialise(doc, draw(encodings))
    if kind == "deep":
        # Splice a deeply nested value in place of a `null`, where json.dumps could not go.
        depth = draw(deep_depths)
        raw = serialise({"ts": NOW_MS, "x": None, "doc": doc}, "utf-8").replace(
            b"null", nested(depth, draw(st.sampled_from([b"", b"1", b'"\\u0000"']))), 1
        )
    return raw


# Mostly the topic of a registered machine, so that most examples reach the payload's decoding.
topics = st.sampled_from(["machine"] * 6 + ["engineer", "stranger", "hostile"]).flatmap(
    lambda kind: {
        "machine": st.just(TOPIC),
        "engineer": st.just("engineers/ENG-1/position"),
        "stranger": st.just("machines/EX-2/telemetry"),
        "hostile": hostile_text,
    }[kind]
)


@settings(max_examples=300, deadline=None)
@given(payloads(), topics)
def test_decoder_never_raises_and_accepts_only_what_the_store_can_hold(
    payload: bytes, topic: str
) -> None:
    out = decode(payload, topic=topic)
    assert len(out.readings) + len(out.positions) + len(out.rejects) >= 1
    assert_holdable(out)


@settings(max_examples=250, deadline=None)
@given(st.lists(readings, min_size=1, max_size=6), st.booleans())
def test_each_reading_is_stored_or_dead_lettered_never_both(
    batch: list[dict[str, object]], as_batch: bool
) -> None:
    doc: object = {"readings": batch} if as_batch else batch[0]
    out = decode(json.dumps(doc).encode())
    assert_holdable(out)
    accepted, refused = len(out.readings), len(out.rejects)
    inner = batch[0].get("readings")
    if not as_batch and not isinstance(inner, list):
        assert (accepted, refused) in {(1, 0), (0, 1)}
    else:
        # Every reading is accounted for once, or the payload as a whole is one dead letter.
        count = len(batch) if as_batch else len(inner)  # type: ignore[arg-type]
        assert accepted + refused == count or (accepted, refused) == (0, 1)


def _codes(n: int, first_spn: int = 1) -> list[dict[str, int]]:
    return [{"spn": spn, "fmi": 3, "oc": 1} for spn in range(first_spn, first_spn + n)]


def test_one_reading_may_carry_the_limit_of_fault_codes_and_no_more() -> None:
    at_limit = decode({"ts": NOW_MS, "dtc": _codes(LIMITS.max_dtcs)})
    assert len(at_limit.readings) == 1
    assert not at_limit.rejects
    # Thousands of codes in one reading would raise thousands of alarms and notices.
    reason, detail = only_reject(decode({"ts": NOW_MS, "dtc": _codes(7500)}))
    assert reason is RejectReason.BAD_DTC
    assert f"7500 fault codes in one reading, at most {LIMITS.max_dtcs}" in detail
    # Copies of one code count too: they are stored as sent.
    copies = [{"spn": 100, "fmi": 1}] * (LIMITS.max_dtcs + 1)
    assert only_reject(decode({"ts": NOW_MS, "dtc": copies}))[0] is RejectReason.BAD_DTC


def test_a_batch_may_not_spread_more_distinct_fault_codes_than_the_limit() -> None:
    half = LIMITS.max_dtcs // 2
    # Many readings repeating the same few codes: an ordinary batch from a faulty machine.
    same = [{"ts": NOW_MS - i * 1000, "dtc": _codes(half)} for i in range(100)]
    kept = decode({"readings": same})
    assert len(kept.readings) == 100
    assert not kept.rejects
    # Readings each under the limit, together far over it: the whole payload is refused.
    spread = [{"ts": NOW_MS - i * 1000, "dtc": _codes(half, 1 + i * half)} for i in range(100)]
    reason, detail = only_reject(decode({"readings": spread}))
    assert reason is RejectReason.BAD_DTC
    assert f"more than {LIMITS.max_dtcs} distinct fault codes in one payload" in detail
