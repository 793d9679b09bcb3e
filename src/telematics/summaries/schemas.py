"""HTTP bodies of the work summaries (docs/customers.md defines every figure)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, Any

from pydantic import BaseModel, Field

from telematics.api.schemas import BodyIn
from telematics.summaries.periods import Bucket
from telematics.summaries.queries import Totals


class RefuelOut(BaseModel):
    """A refuel: where the rise began and the litres it added (null: tank size unknown)."""

    machine_id: str
    ts: datetime
    litres: float | None


class FiguresOut(BaseModel):
    """The figures of a bucket, or of one machine over the whole range."""

    engine_hours: float
    working_hours: float
    idle_hours: float
    fuel_used_l: float | None
    utilisation_pct: float | None
    distance_km: float
    first_start: datetime | None
    last_stop: datetime | None
    meter_anomalies: int
    coverage_pct: float


class BucketOut(FiguresOut):
    """One bucket: local midnight to local midnight in the answer's zone."""

    start: datetime
    end: datetime
    refuels: list[RefuelOut]
    hours_by_hour: list[float] = Field(description="Working hours in each local hour 0..23.")


class MachineFiguresOut(FiguresOut):
    """One machine of a fleet over the whole range."""

    machine_id: str


class MachineSummaryOut(BaseModel):
    """A machine's summary."""

    machine_id: str
    period: str
    tz: str
    buckets: list[BucketOut]


class FleetSummaryOut(BaseModel):
    """A customer's fleet: buckets summed over its machines, and a per-machine table."""

    customer_id: str
    period: str
    tz: str
    machines: int
    buckets: list[BucketOut]
    per_machine: list[MachineFiguresOut]


class SettingsIn(BodyIn):
    """A customer's summary settings."""

    tz: Annotated[
        str, Field(min_length=1, max_length=64, description="IANA zone, e.g. Asia/Shanghai")
    ]
    shift_hours_per_day: Annotated[float, Field(gt=0, le=24)] = 8.0


class SettingsOut(BaseModel):
    """A customer's summary settings."""

    customer_id: str
    tz: str
    shift_hours_per_day: float


def figures(
    t: Totals, seconds: float, days: int, machines: int, shift_h: float, tz_of: tzinfo
) -> dict[str, Any]:
    """The figures of `t` over `seconds` (`days` local days) for `machines` machines."""
    v = t.values
    working_h = v["working_s"] / 3600
    shift = shift_h * days * machines
    known = seconds * machines
    return {
        "engine_hours": round(v["engine_h"], 4),
        "working_hours": round(working_h, 4),
        "idle_hours": round(v["idle_s"] / 3600, 4),
        "fuel_used_l": None if t.fuel_used_l is None else round(t.fuel_used_l, 3),
        "utilisation_pct": round(100 * working_h / shift, 2) if shift > 0 else None,
        "distance_km": round(v["distance_m"] / 1000, 3),
        "first_start": t.first_start.astimezone(tz_of) if t.first_start else None,
        "last_stop": t.last_stop.astimezone(tz_of) if t.last_stop else None,
        "meter_anomalies": int(v["meter_anomalies"]),
        "coverage_pct": round(100 * v["known_s"] / known, 2) if known > 0 else 0.0,
    }


def bucket_out(
    b: Bucket, t: Totals, machines: int, shift_h: float, tz_of: tzinfo
) -> dict[str, Any]:
    """A bucket's answer, as `BucketOut` describes it (plain values: a fleet's month is
    thousands of them, and building models for each cost more than the query).
    """
    return {
        "start": b.start.astimezone(tz_of),
        "end": b.end.astimezone(tz_of),
        **figures(t, b.seconds, b.days, machines, shift_h, tz_of),
        "refuels": [
            {
                "machine_id": m,
                "ts": ts.astimezone(tz_of),
                "litres": None if lt is None else round(lt, 3),
            }
            for m, ts, lt in t.refuels
        ],
        "hours_by_hour": [round(s / 3600, 4) for s in t.working_by_hour],
    }
