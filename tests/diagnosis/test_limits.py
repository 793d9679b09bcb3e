"""The rule book's limits as a chart draws them: the same figures the engine judges by."""

from __future__ import annotations

from importlib import resources

from diagnosis.limits import Edge, Side, signal_limits
from diagnosis.rules import RuleBook
from diagnosis.signals import SIGNAL_NAMES

BOOK = RuleBook.load()
BOOK_TEXT = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")


def test_every_limit_lies_on_a_catalogued_signal_with_a_raise_and_a_clear_line() -> None:
    limits = signal_limits(BOOK.default)
    assert {lim.signal for lim in limits} <= set(SIGNAL_NAMES)
    for lim in limits:
        assert (lim.value is None) == (lim.over is not None)
        assert len(lim.xs) == len(lim.ys)
    by_fault = {(lim.fault, lim.signal, lim.edge) for lim in limits}
    assert ("engine_overheat", "coolant_temp_c", Edge.CLEAR) in by_fault
    assert ("low_oil_pressure", "oil_pressure_kpa", Edge.RAISE) in by_fault


def test_a_class_table_moves_its_limits() -> None:
    text = BOOK_TEXT.replace(
        "[class.crane.engine_power_loss]\nrated_rpm = 2100.0",
        "[class.crane.engine_power_loss]\nrated_rpm = 2100.0\n\n"
        "[class.crane.engine_overheat]\nraise_c = 110.0\nclear_c = 102.0",
    )
    book = RuleBook.from_toml(text)
    crane = {(lim.signal, lim.edge): lim for lim in signal_limits(book.for_machine("X", "crane"))}
    assert crane["coolant_temp_c", Edge.RAISE].value == 110.0
    assert crane["coolant_temp_c", Edge.CLEAR].value == 102.0
    assert crane["coolant_temp_c", Edge.RAISE].side is Side.ABOVE
    speed = crane["engine_speed_rpm", Edge.RAISE]
    assert speed.value == 2100.0 * book.classes["crane"].engine_power_loss.raise_speed_frac
    assert speed.condition == "high_load"


def test_the_oil_pressure_limit_is_the_rule_curve_over_engine_speed() -> None:
    rule = BOOK.classes["pump_truck"].low_oil_pressure
    limits = signal_limits(BOOK.classes["pump_truck"])
    raise_, clear = (lim for lim in limits if lim.signal == "oil_pressure_kpa")
    assert raise_.over == "engine_speed_rpm"
    assert raise_.xs == rule.curve_rpm
    assert raise_.ys == rule.curve_kpa
    assert clear.ys == tuple(y + rule.clear_margin_kpa for y in rule.curve_kpa)
    assert raise_.side is Side.BELOW
