"""Single values of wire contract v1 checked against its limits: times, numbers, fault codes.

This module owns `Limits` (what the gateway accepts, resolved from settings once) and the checks
of one value each: a reading's `ts` (epoch ms or RFC 3339 with an offset, inside the retention
and the future tolerance), a number inside its physical range, a reading's fault-code list, and
the distinct fault codes of a whole payload. A refusal is a `RefusedError` carrying its reason;
`telematics.wire.decode` turns it into a dead letter. Pure: no I/O, no clock (`now_ms` is given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from diagnosis.signals import DTC_FMI_MAX, DTC_OC_MAX, DTC_SPN_MAX
from telematics.wire.decoded import RejectReason
from telematics.wire.untrusted import RefusedError, check_kept, shown

__all__ = ["Limits", "check_distinct_dtcs", "check_dtc", "check_number", "parse_ts"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Acceptance limits, resolved from settings once.

    Attributes:
        max_payload_bytes: Largest accepted payload.
        max_readings: Most readings in one batch payload.
        max_dtcs: Most fault codes in one reading, and most distinct ones (SPN and FMI) in one
            payload: each may raise an alarm and notify a customer, so one message must not
            raise thousands.
        future_tolerance_ms: How far ahead of the server clock a `ts` may be.
        retention_ms: How far back a `ts` may be (older data would land in dropped partitions).
    """

    max_payload_bytes: int = 256 * 1024
    max_readings: int = 1000
    max_dtcs: int = 100
    future_tolerance_ms: int = 5 * 60 * 1000
    retention_ms: int = 30 * 24 * 3600 * 1000


def parse_ts(raw: object, now_ms: int, limits: Limits) -> int:
    """A `ts` as epoch milliseconds: an integer as sent, or RFC 3339 with its UTC offset."""
    if type(raw) is int:
        ts_ms = raw
    elif type(raw) is str:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise RefusedError(
                RejectReason.BAD_TIMESTAMP, f"ts {shown(raw)} is not RFC 3339"
            ) from None
        if parsed.tzinfo is None:
            raise RefusedError(RejectReason.BAD_TIMESTAMP, f"ts {shown(raw)} has no UTC offset")
        ts_ms = int(parsed.timestamp() * 1000)
    elif raw is None:
        raise RefusedError(RejectReason.BAD_TIMESTAMP, "ts is missing")
    else:
        raise RefusedError(
            RejectReason.BAD_TIMESTAMP,
            f"ts must be epoch milliseconds or RFC 3339, not {type(raw).__name__}",
        )
    if ts_ms > now_ms + limits.future_tolerance_ms:
        raise RefusedError(
            RejectReason.TS_IN_FUTURE, f"ts {ts_ms} is {(ts_ms - now_ms) // 1000} s in the future"
        )
    if ts_ms < now_ms - limits.retention_ms:
        raise RefusedError(RejectReason.TS_TOO_OLD, f"ts {ts_ms} is older than retention")
    return ts_ms


def check_number(name: str, value: object, lo: float, hi: float) -> float:
    """A JSON number (not a boolean), finite and inside `[lo, hi]`, as a float."""
    # bool is a subclass of int: `true` is not a pressure.
    if type(value) is not float and type(value) is not int:
        raise RefusedError(
            RejectReason.WRONG_TYPE, f"{name} must be a number, not {type(value).__name__}"
        )
    # orjson yields no integer beyond 2**64, so float() cannot overflow; a literal beyond float8
    # never gets this far (`parse_json` refuses it as out of range).
    number = float(value)
    if not math.isfinite(number):
        raise RefusedError(RejectReason.NOT_FINITE, f"{name} is not a finite number")
    if not lo <= number <= hi:
        raise RefusedError(
            RejectReason.OUT_OF_RANGE, f"{name}={value} outside physical range [{lo}, {hi}]"
        )
    return number


def check_dtc(raw: object, limits: Limits) -> str | None:
    """A reading's fault-code list checked entry by entry, as the JSON text stored; None when
    it is empty.
    """
    if not isinstance(raw, list):
        raise RefusedError(RejectReason.BAD_DTC, "dtc must be a list of fault codes")
    if not raw:
        return None
    if len(raw) > limits.max_dtcs:
        raise RefusedError(
            RejectReason.BAD_DTC,
            f"{len(raw)} fault codes in one reading, at most {limits.max_dtcs}",
        )
    for code in raw:
        if not isinstance(code, dict):
            raise RefusedError(RejectReason.BAD_DTC, "each dtc must be an object")
        spn, fmi, oc = code.get("spn"), code.get("fmi"), code.get("oc", 0)
        if type(spn) is not int or not 0 <= spn <= DTC_SPN_MAX:
            raise RefusedError(
                RejectReason.BAD_DTC, f"dtc spn {shown(spn)} not in 0..{DTC_SPN_MAX}"
            )
        if type(fmi) is not int or not 0 <= fmi <= DTC_FMI_MAX:
            raise RefusedError(
                RejectReason.BAD_DTC, f"dtc fmi {shown(fmi)} not in 0..{DTC_FMI_MAX}"
            )
        if type(oc) is not int or not 0 <= oc <= DTC_OC_MAX:
            raise RefusedError(RejectReason.BAD_DTC, f"dtc oc {shown(oc)} not in 0..{DTC_OC_MAX}")
        if len(code) > 2 + ("oc" in code):
            # Fields beyond spn/fmi/oc are kept as sent, so they must be storable too.
            check_kept("dtc entry", None, code, RejectReason.BAD_DTC)
    return orjson.dumps(raw).decode()


def check_distinct_dtcs(readings: list[Any], limits: Limits) -> None:
    """Refuse a payload whose readings carry more distinct fault codes than `max_dtcs`.

    Each reading's own list is checked as it is decoded; this bounds the payload as a whole,
    where many readings of a few codes each could otherwise raise thousands of alarms. Codes of
    the wrong shape are left to the reading's own check.
    """
    codes: set[tuple[int, int]] = set()
    for reading in readings:
        listed = reading.get("dtc") if type(reading) is dict else None
        if type(listed) is not list:
            continue
        for code in listed:
            if type(code) is dict and type(code.get("spn")) is int and type(code.get("fmi")) is int:
                codes.add((code["spn"], code["fmi"]))
        if len(codes) > limits.max_dtcs:
            raise RefusedError(
                RejectReason.BAD_DTC,
                f"more than {limits.max_dtcs} distinct fault codes in one payload",
            )
