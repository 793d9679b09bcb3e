"""The rule book's thresholds as limits on a signal: what a chart of that signal draws.

This module owns the one mapping from rule tables (`diagnosis.rules.Thresholds`) to lines on a
signal's axis, so a chart shows exactly the figures the engine judges by. A limit is either flat
(`value`) or a curve over another signal (`over`, `xs`, `ys`: the low-oil-pressure minimum over
engine speed, interpolated linearly and held flat beyond the ends, as the rule does).

Rules that judge a rate or a change (coolant rising fast, fuel dropping with the engine off), a
place (outside the site) or time (silence) have no line on a level chart and give no limit.
It must never evaluate a rule, read a file or know a figure: it only restates the rule book.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from diagnosis.events import (
    CHARGING_FAILURE,
    ENGINE_OVERHEAT,
    ENGINE_POWER_LOSS,
    HYDRAULIC_OVERHEAT,
    LOW_OIL_PRESSURE,
)
from diagnosis.rules import TemperatureLimit, Thresholds


class Edge(StrEnum):
    """Which transition of the rule the limit belongs to."""

    RAISE = "raise"
    CLEAR = "clear"


class Side(StrEnum):
    """Where the faulty values lie: above the raise limit, or below it."""

    ABOVE = "above"
    BELOW = "below"


@dataclass(frozen=True, slots=True)
class SignalLimit:
    """One line on one signal's chart.

    Attributes:
        signal: The signal on whose axis the limit lies (catalogue name, with its unit).
        fault: The rule (fault code) that judges by it.
        edge: The raise limit, or the clear limit (hysteresis).
        side: Faulty values are above or below the raise limit.
        value: A flat limit, in the signal's unit; None for a curve.
        over: The signal a curve is a function of (None for a flat limit).
        xs: The curve's points on `over`, increasing (empty for a flat limit).
        ys: The limit at each point, in the signal's unit.
        condition: When the limit applies: '' always, `engine_running`, or `high_load` (at or
            above the rule's load limit, the `load_pct` limit of the same fault).
    """

    signal: str
    fault: str
    edge: Edge
    side: Side
    value: float | None = None
    over: str | None = None
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    condition: str = ""


def _temperature(signal: str, fault: str, rule: TemperatureLimit) -> tuple[SignalLimit, ...]:
    return (
        SignalLimit(signal, fault, Edge.RAISE, Side.ABOVE, value=rule.raise_c),
        SignalLimit(signal, fault, Edge.CLEAR, Side.ABOVE, value=rule.clear_c),
    )


def signal_limits(t: Thresholds) -> tuple[SignalLimit, ...]:
    """Every level limit of a machine's thresholds, by signal (see the module docstring)."""
    oil = t.low_oil_pressure
    power = t.engine_power_loss
    under_load = "high_load"
    return (
        SignalLimit("oil_pressure_kpa", LOW_OIL_PRESSURE, Edge.RAISE, Side.BELOW,
                    over="engine_speed_rpm", xs=oil.curve_rpm, ys=oil.curve_kpa),
        SignalLimit("oil_pressure_kpa", LOW_OIL_PRESSURE, Edge.CLEAR, Side.BELOW,
                    over="engine_speed_rpm", xs=oil.curve_rpm,
                    ys=tuple(y + oil.clear_margin_kpa for y in oil.curve_kpa)),
        *_temperature("coolant_temp_c", ENGINE_OVERHEAT, t.engine_overheat),
        *_temperature("hydraulic_oil_temp_c", HYDRAULIC_OVERHEAT, t.hydraulic_overheat),
        SignalLimit("battery_v", CHARGING_FAILURE, Edge.RAISE, Side.BELOW,
                    value=t.charging_failure.raise_v, condition="engine_running"),
        SignalLimit("battery_v", CHARGING_FAILURE, Edge.CLEAR, Side.BELOW,
                    value=t.charging_failure.clear_v, condition="engine_running"),
        SignalLimit("engine_speed_rpm", ENGINE_POWER_LOSS, Edge.RAISE, Side.BELOW,
                    value=power.rated_rpm * power.raise_speed_frac, condition=under_load),
        SignalLimit("engine_speed_rpm", ENGINE_POWER_LOSS, Edge.CLEAR, Side.BELOW,
                    value=power.rated_rpm * power.clear_speed_frac, condition=under_load),
        SignalLimit("load_pct", ENGINE_POWER_LOSS, Edge.RAISE, Side.ABOVE, value=power.load_pct),
    )  # fmt: skip
