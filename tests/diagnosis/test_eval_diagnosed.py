"""bench.eval_diagnosed: what a detected anomaly reaches the expert as."""

from __future__ import annotations

from dataclasses import dataclass

from bench.eval_diagnosed import diagnosed_as
from diagnosis.knowledge import KnowledgeBase

KIND = "unexplained_anomaly"


@dataclass(frozen=True)
class _Fault:
    type: str
    detected_ms: int | None
    detail: str


def test_a_named_relation_is_counted_as_its_mapped_fault_and_misses_not_at_all() -> None:
    relation = "relation broken: oil_pressure_kpa low for engine_speed_rpm (-8.2); x z=-2.1"
    faults = [
        _Fault(f"{KIND}/oil_pressure_low_for_speed/sudden", 1, relation),
        _Fault(f"{KIND}/oil_pressure_low_for_speed/sudden", 2, "oil_pressure_kpa z=-9.0"),
        _Fault(f"{KIND}/oil_pressure_low_for_speed/sudden", None, ""),  # missed
        _Fault(f"{KIND}/overcharging/sudden", 3, "battery_v z=+9.0"),
        _Fault("low_oil_pressure/sudden", 4, ""),  # another kind
    ]
    found = diagnosed_as(faults, KIND, KnowledgeBase.load())
    assert {t: dict(c) for t, c in found.items()} == {
        f"{KIND}/oil_pressure_low_for_speed/sudden": {"low_oil_pressure": 1, KIND: 1},
        f"{KIND}/overcharging/sudden": {KIND: 1},
    }
