"""Decoding of wire contract v1: MQTT topic and payload bytes in, columns and dead letters out.

Pure: no I/O, no clock (the caller passes `now_ms`), no registry lookups (the caller passes the set
of known machines and engineers). Readings are appended straight into per-signal columns, since
building per-row objects first and transposing them later costs more than the parse itself.

A refusal is a value (`Reject`), never an exception. Whole-message problems (not JSON, too large,
too many readings, unknown machine, a `machine_id` that contradicts the topic) refuse the whole
payload; a bad reading inside an otherwise good batch refuses that reading alone, so one broken
sample does not cost the 999 good ones beside it.

This is the boundary of untrusted input. `decode_message` never raises: an exception it did not
foresee while decoding one message takes back whatever that message had appended and becomes that
message's dead letter (`decode_error`, the exception's class in the detail). And whatever it
accepts, the store can hold: payloads are parsed by orjson alone, and values kept as sent are
checked for NUL and bounded nesting (`telematics.wire.untrusted`).

The values it yields (the columns, `Reject` and its reasons, `DecodedBatch`) are
`telematics.wire.decoded`'s, and `Limits` with the checks of single values is
`telematics.wire.values`'s; both are re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Container
from enum import StrEnum
from typing import Any

import orjson

from diagnosis.signals import (
    SIGNAL_INDEX,
    SIGNALS,
    Signal,
)
from telematics.wire.decoded import (
    DecodedBatch,
    PositionColumns,
    ReadingColumns,
    Reject,
    RejectReason,
)
from telematics.wire.untrusted import (
    MAX_EXTRA_DEPTH,
    RefusedError,
    extra_json,
    parse_json,
    shown,
    storable,
    unforeseen,
)
from telematics.wire.values import (
    Limits,
    check_distinct_dtcs,
    check_dtc,
    check_number,
    parse_ts,
)

__all__ = [
    "MAX_EXTRA_DEPTH",
    "DecodedBatch",
    "Limits",
    "PositionColumns",
    "ReadingColumns",
    "Reject",
    "RejectReason",
    "TopicKind",
    "decode_message",
    "is_valid_id",
    "parse_topic",
    "storable",
]

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_NAN = float("nan")
_LAT_IDX = SIGNAL_INDEX["lat"]
_LON_IDX = SIGNAL_INDEX["lon"]
_LAT_SIGNAL = SIGNALS[_LAT_IDX]
_LON_SIGNAL = SIGNALS[_LON_IDX]


class TopicKind(StrEnum):
    """The kinds of topic the gateway subscribes to."""

    TELEMETRY = "telemetry"
    POSITION = "position"


def parse_topic(topic: str) -> tuple[TopicKind, str] | None:
    """Split `machines/{id}/telemetry` or `engineers/{id}/position` into kind and id.

    Returns:
        The topic kind and the source id, or None when the topic is not one of ours or the id is
        not a valid identifier.
    """
    parts = topic.split("/")
    if len(parts) != 3 or not _ID_RE.fullmatch(parts[1]):
        return None
    if parts[0] == "machines" and parts[2] == "telemetry":
        return TopicKind.TELEMETRY, parts[1]
    if parts[0] == "engineers" and parts[2] == "position":
        return TopicKind.POSITION, parts[1]
    return None


def is_valid_id(value: str) -> bool:
    """Whether `value` is acceptable as a machine or engineer id (1-64 safe characters)."""
    return _ID_RE.fullmatch(value) is not None


def _check_machine_id(doc: dict[str, Any], machine_id: str) -> None:
    claimed = doc.get("machine_id", machine_id)
    if claimed != machine_id:
        raise RefusedError(
            RejectReason.MACHINE_ID_MISMATCH,
            f"machine_id {shown(claimed)} contradicts topic machine {machine_id!r}",
        )


def _decode_reading(
    reading: object, machine_id: str, now_ms: int, limits: Limits, out: ReadingColumns
) -> None:
    """Validate one reading fully, then append it; a refused reading leaves `out` untouched."""
    if not isinstance(reading, dict):
        raise RefusedError(RejectReason.BAD_STRUCTURE, "a reading must be a JSON object")
    ts_ms = parse_ts(reading.get("ts"), now_ms, limits)
    row = [_NAN] * len(SIGNALS)
    dtc: str | None = None
    extra: dict[str, Any] | None = None
    for key, value in reading.items():
        idx = SIGNAL_INDEX.get(key)
        if idx is not None:
            if value is not None:  # an explicit null means "not measured", like an absent key
                sig = SIGNALS[idx]
                row[idx] = check_number(key, value, sig.min_value, sig.max_value)
        elif key == "dtc":
            dtc = check_dtc(value, limits)
        elif key not in ("ts", "machine_id"):
            if extra is None:
                extra = {}
            extra[key] = value
    _check_machine_id(reading, machine_id)
    extra_text = None if extra is None else extra_json(extra)
    out.machine_ids.append(machine_id)
    out.ts_ms.append(ts_ms)
    for column, value in zip(out.values, row, strict=True):
        column.append(value)
    out.dtc.append(dtc)
    out.extra.append(extra_text)


def _telemetry(
    topic: str,
    machine_id: str,
    payload: bytes,
    now_ms: int,
    limits: Limits,
    out: DecodedBatch,
) -> None:
    doc = parse_json(payload)
    if isinstance(doc, dict) and "readings" in doc:
        readings = doc["readings"]
        if not isinstance(readings, list):
            raise RefusedError(RejectReason.BAD_STRUCTURE, "readings must be a list")
        if len(readings) > limits.max_readings:
            raise RefusedError(
                RejectReason.TOO_MANY_READINGS,
                f"{len(readings)} readings in one payload, at most {limits.max_readings}",
            )
        if not readings:
            raise RefusedError(RejectReason.BAD_STRUCTURE, "readings is empty")
        _check_machine_id(doc, machine_id)
        check_distinct_dtcs(readings, limits)
    elif isinstance(doc, dict):
        readings = [doc]
    else:
        raise RefusedError(
            RejectReason.BAD_STRUCTURE, "payload must be a reading object or {readings: [...]}"
        )
    single = len(readings) == 1 and readings[0] is doc
    if len(readings) >= _FAST_MIN_READINGS and _append_batch_fast(
        readings, machine_id, now_ms, limits, out.readings
    ):
        return
    for i, reading in enumerate(readings):
        try:
            _decode_reading(reading, machine_id, now_ms, limits, out.readings)
        except RefusedError as refused:
            if single:
                raise
            out.rejects.append(
                Reject(
                    topic,
                    _reading_bytes(reading, payload),
                    refused.reason,
                    storable(f"reading {i} of {len(readings)}: {refused.detail}"),
                    machine_id,
                )
            )


def _reading_bytes(reading: object, payload: bytes) -> bytes:
    """One refused reading as JSON, for its dead letter; the whole payload if it cannot be.

    orjson writes at most 255 levels; a reading nested deeper is dead-lettered with the payload
    it came in. A replay of that payload stores nothing twice (readings are deduplicated).
    """
    try:
        return orjson.dumps(reading)
    except orjson.JSONEncodeError:
        return payload


# Below this, the per-column set-up costs more than the per-value loop it saves.
_FAST_MIN_READINGS = 4
_FAST_KEYS = frozenset({"ts", "dtc", *SIGNAL_INDEX})
_NUMBER_TYPES = frozenset({float, int, type(None)})


def _fast_column(column: list[Any], sig: Signal) -> list[Any] | None:
    if not set(map(type, column)) <= _NUMBER_TYPES:
        return None
    if None in column:
        column = [_NAN if v is None else v for v in column]
        present = [v for v in column if v == v]  # noqa: PLR0124 - NaN is the absent marker
    else:
        present = column
    # orjson never yields NaN or infinities, so a range check is the whole check.
    if present and (min(present) < sig.min_value or max(present) > sig.max_value):
        return None
    return column


def _append_batch_fast(
    readings: list[Any], machine_id: str, now_ms: int, limits: Limits, out: ReadingColumns
) -> bool:
    """Validate and append a whole batch column by column, or return False without appending.

    The common batch (catalogue signals, integer `ts`, all valid) is checked with a few C-level
    passes per column instead of a Python loop per value: several times faster per reading.
    Anything unusual (extra keys, RFC 3339 times, a bad value) returns False, and the caller
    decodes reading by reading, which finds the precise reason. Both paths accept exactly the same
    readings; a property test holds them to it.
    """
    if any(type(r) is not dict for r in readings):
        return False
    first = tuple(readings[0])
    by_key: dict[str, list[Any]] | None = None
    if all(tuple(r) == first for r in readings):
        # The common case: one firmware, every reading with the same keys in the same order.
        # One C-level transpose then replaces a dict lookup per signal and reading.
        transposed = map(list, zip(*[r.values() for r in readings], strict=True))
        by_key = dict(zip(first, transposed, strict=True))
        keys: set[str] = set(first)
    else:
        keys = set().union(*readings)

    def column_of(name: str) -> list[Any]:
        return by_key[name] if by_key is not None else [r.get(name) for r in readings]

    ts: list[Any] = column_of("ts") if "ts" in keys else [None] * len(readings)
    if (
        not keys <= _FAST_KEYS
        or set(map(type, ts)) != {int}
        or min(ts) < now_ms - limits.retention_ms
        or max(ts) > now_ms + limits.future_tolerance_ms
    ):
        return False
    count = len(readings)
    columns: list[list[Any]] = []
    for sig in SIGNALS:
        column = _fast_column(column_of(sig.name), sig) if sig.name in keys else [_NAN] * count
        if column is None:
            return False
        columns.append(column)
    try:
        dtc = [check_dtc(r["dtc"], limits) if "dtc" in r else None for r in readings]
    except RefusedError:
        return False
    out.machine_ids.extend([machine_id] * count)
    out.ts_ms.extend(ts)
    for mine, column in zip(out.values, columns, strict=True):
        mine.extend(column)
    out.dtc.extend(dtc)
    out.extra.extend([None] * count)
    return True


def _position(engineer_id: str, doc: Any, now_ms: int, limits: Limits, out: DecodedBatch) -> None:
    if not isinstance(doc, dict):
        raise RefusedError(RejectReason.BAD_STRUCTURE, "a position must be a JSON object")
    ts_ms = parse_ts(doc.get("ts"), now_ms, limits)
    for key in ("lat", "lon"):
        if doc.get(key) is None:
            raise RefusedError(RejectReason.BAD_STRUCTURE, f"{key} is missing")
    lat = check_number("lat", doc["lat"], _LAT_SIGNAL.min_value, _LAT_SIGNAL.max_value)
    lon = check_number("lon", doc["lon"], _LON_SIGNAL.min_value, _LON_SIGNAL.max_value)
    out.positions.engineer_ids.append(engineer_id)
    out.positions.ts_ms.append(ts_ms)
    out.positions.lat.append(lat)
    out.positions.lon.append(lon)


def decode_message(
    topic: str,
    payload: bytes,
    *,
    now_ms: int,
    limits: Limits,
    known_machines: Container[str],
    known_engineers: Container[str],
    out: DecodedBatch,
) -> None:
    """Decode one MQTT message into `out`: its readings or position, or dead letters.

    Never raises: every message ends as accepted rows, dead letters, or both for different
    readings of one batch, never both for one reading. An exception nobody foresaw takes back
    what the message had appended and becomes its one `decode_error` dead letter.

    Args:
        topic: The topic the message arrived on.
        payload: Raw payload bytes.
        now_ms: Server clock, epoch milliseconds, for the future and retention checks.
        limits: Acceptance limits.
        known_machines: Registered machine ids.
        known_engineers: Registered engineer ids.
        out: Batch to append to.
    """
    # The columns' own lengths: `len(out.readings)` is a Python-level call, on the hot path.
    readings_before, positions_before = len(out.readings.ts_ms), len(out.positions.ts_ms)
    rejects_before = len(out.rejects)
    source_id: str | None = None
    try:
        parsed = parse_topic(topic)
        if parsed is None:
            raise RefusedError(RejectReason.BAD_TOPIC, f"topic {shown(topic)} is not ours")
        source_id = parsed[1]
        _decode_known(
            parsed[0],
            source_id,
            topic,
            payload,
            now_ms,
            limits,
            out,
            known_machines,
            known_engineers,
        )
    except RefusedError as refused:
        out.rejects.append(
            Reject(
                storable(topic, _TOPIC_MAX_CHARS),
                payload,
                refused.reason,
                storable(refused.detail),
                source_id,
            )
        )
    except Exception as exc:  # noqa: BLE001 - the boundary of untrusted input, see the docstring
        # Take back whatever this message had appended, however far its appends got.
        out.readings.truncate(readings_before)
        out.positions.truncate(positions_before)
        del out.rejects[rejects_before:]
        out.rejects.append(
            Reject(
                storable(topic, _TOPIC_MAX_CHARS),
                payload,
                RejectReason.DECODE_ERROR,
                unforeseen(exc),
                source_id,
            )
        )


# MQTT topics are at most 65,535 bytes; a foreign one is kept whole (escaped) for its replay.
_TOPIC_MAX_CHARS = 65_535


def _decode_known(
    kind: TopicKind,
    source_id: str,
    topic: str,
    payload: bytes,
    now_ms: int,
    limits: Limits,
    out: DecodedBatch,
    known_machines: Container[str],
    known_engineers: Container[str],
) -> None:
    if len(payload) > limits.max_payload_bytes:
        raise RefusedError(
            RejectReason.PAYLOAD_TOO_LARGE,
            f"payload of {len(payload)} bytes, at most {limits.max_payload_bytes}",
        )
    if kind is TopicKind.TELEMETRY:
        if source_id not in known_machines:
            raise RefusedError(
                RejectReason.UNKNOWN_MACHINE, f"machine {source_id!r} is not registered"
            )
        _telemetry(topic, source_id, payload, now_ms, limits, out)
    else:
        if source_id not in known_engineers:
            raise RefusedError(
                RejectReason.UNKNOWN_ENGINEER, f"engineer {source_id!r} is not registered"
            )
        _position(source_id, parse_json(payload), now_ms, limits, out)
