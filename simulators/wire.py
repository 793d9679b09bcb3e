"""Wire contract v1 on the sending side: frames in, MQTT topics and JSON payloads out.

This module owns how a reading looks on the wire, and nothing else: it is pure (no sockets, no
clock) and knows the contract only as documented (`machines/{machine_id}/telemetry`, one reading
or `{"readings": [...]}` of up to 1,000). It never imports the backend.

Rows are plain dicts so that orjson serialises them in one call; building them column-wise from
`ndarray.tolist()` is what keeps encoding near a microsecond a reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import orjson

from simulators.state import Frame

TsFormat = Literal["ms", "rfc3339"]
"""`ms`: integer epoch milliseconds; `rfc3339`: UTC text with milliseconds, `...T08:00:00.123Z`."""

MAX_READINGS_PER_MESSAGE: Final = 1000
"""The contract's largest batch."""

Row = dict[str, object]


def telemetry_topic(machine_id: str) -> str:
    """The topic a machine publishes its readings to."""
    return f"machines/{machine_id}/telemetry"


def frame_rows(frame: Frame, ts_format: TsFormat = "ms") -> list[Row]:
    """One wire reading per machine of `frame`, in fleet order.

    Machines without active fault codes omit `dtc` (the contract allows either an empty list or
    no key).

    Args:
        frame: Readings of one step.
        ts_format: How to write `ts`.

    Returns:
        One dict per machine, ready for orjson.
    """
    if ts_format == "ms":
        ts: list[object] = frame.ts_ms.tolist()
    else:
        ts = np.datetime_as_string(
            frame.ts_ms.astype("datetime64[ms]"), unit="ms", timezone="UTC"
        ).tolist()
    rows: list[Row] = [
        {
            "ts": t,
            "engine_speed_rpm": rpm,
            "oil_pressure_kpa": oil,
            "coolant_temp_c": coolant,
            "hydraulic_oil_temp_c": hyd,
            "fuel_level_pct": fuel,
            "battery_v": volts,
            "engine_hours": hours,
            "lat": lat,
            "lon": lon,
            "load_pct": load,
        }
        for t, rpm, oil, coolant, hyd, fuel, volts, hours, lat, lon, load in zip(
            ts, *frame.values.tolist(), strict=True
        )
    ]
    for idx, codes in frame.dtcs.items():
        if codes:
            rows[idx]["dtc"] = [{"spn": c.spn, "fmi": c.fmi, "oc": c.oc} for c in codes]
    return rows


def encode_reading(row: Row) -> bytes:
    """The payload of a message carrying one reading."""
    return orjson.dumps(row)


def encode_batch(rows: Sequence[Row]) -> bytes:
    """The payload of a message carrying several readings of one machine.

    Raises:
        ValueError: More readings than the contract allows in one message.
    """
    if len(rows) > MAX_READINGS_PER_MESSAGE:
        raise ValueError(f"{len(rows)} readings in one message, at most {MAX_READINGS_PER_MESSAGE}")
    return orjson.dumps({"readings": rows})
