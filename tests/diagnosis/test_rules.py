"""The rule book: packaged defaults, per-class overrides, and errors that name the key."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from diagnosis.events import RULE_FAULTS
from diagnosis.rules import RuleBook, RuleBookError


def _packaged() -> dict[str, object]:
    text = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")
    return tomllib.loads(text)


def _toml_with(section: str, extra: str) -> str:
    """The packaged rule book with lines added to one of its tables."""
    text = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")
    header = f"[{section}]\n"
    assert header in text
    return text.replace(header, header + extra + "\n", 1)


def test_packaged_rule_book_has_every_rule_fault() -> None:
    book = RuleBook.load()
    for fault in RULE_FAULTS:
        assert hasattr(book.default, fault)


def test_packaged_rule_book_has_the_three_machine_classes() -> None:
    book = RuleBook.load()
    assert {"excavator", "pump_truck", "crane"} <= set(book.classes)


def test_class_rated_speed_overrides_the_default() -> None:
    raw = _packaged()["class"]
    assert isinstance(raw, dict)
    book = RuleBook.load()
    for name, table in raw.items():
        rated = table["engine_power_loss"]["rated_rpm"]
        assert book.for_machine("any", name).engine_power_loss.rated_rpm == rated


def test_partial_override_keeps_the_rest_of_the_default() -> None:
    book = RuleBook.load()
    crane = book.for_machine("STC500", "crane")
    assert crane.engine_power_loss.load_pct == book.default.engine_power_loss.load_pct
    assert crane.engine_overheat == book.default.engine_overheat


def test_unknown_class_gets_the_default() -> None:
    book = RuleBook.load()
    assert book.for_machine("TC9000", "tower_crane_9000") is book.default


def _plus(extra: str) -> str:
    """The packaged rule book with tables appended."""
    text = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")
    return f"{text}\n{extra}\n"


def test_load_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(_plus("[class.dozer.engine_overheat]\nraise_c = 111.0"), encoding="utf-8")
    book = RuleBook.load(path)
    assert book.for_machine("D155", "dozer").engine_overheat.raise_c == 111.0
    assert book.default.engine_overheat.raise_c != 111.0


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    text = _toml_with("class.crane.engine_power_loss", "load_pct = 90")
    assert (
        RuleBook.from_toml(text).for_machine("STC500", "crane").engine_power_loss.load_pct == 90.0
    )


@pytest.mark.parametrize(
    ("section", "extra"),
    [
        ("class.crane.engine_power_loss", 'load_pct = "high"'),
        ("class.crane.engine_power_loss", "load_pct = true"),
        ("class.crane.engine_power_loss", "rated_rmp = 2000"),
        ("class.excavator.low_oil_pressure", "raise_readings = 0"),
        ("class.excavator.low_oil_pressure", "raise_readings = 2.5"),
        ("class.pump_truck.low_oil_pressure", "clear_margin_kpa = -1"),
        ("class.pump_truck.low_oil_pressure", "baseline_raise_fraction = 1.2"),
        ("class.pump_truck.low_oil_pressure", "baseline_clear_fraction = 0.5"),
    ],
)
def test_bad_value_is_reported_with_its_key_path(section: str, extra: str) -> None:
    key = f"{section}.{extra.split(maxsplit=1)[0]}"
    text = _toml_with(section, extra)
    with pytest.raises(RuleBookError) as err:
        RuleBook.from_toml(text)
    assert err.value.key == key
    assert key in str(err.value)


def test_hysteresis_the_wrong_way_round_is_refused() -> None:
    text = _plus("[class.dozer.engine_overheat]\nclear_c = 120.0")
    with pytest.raises(RuleBookError) as err:
        RuleBook.from_toml(text)
    assert err.value.key == "class.dozer.engine_overheat.clear_c"


def test_curve_with_mismatched_points_is_refused() -> None:
    text = _plus("[class.dozer.low_oil_pressure]\ncurve_kpa = [60.0]")
    with pytest.raises(RuleBookError) as err:
        RuleBook.from_toml(text)
    assert err.value.key == "class.dozer.low_oil_pressure.curve_kpa"


def test_missing_key_in_default_is_reported() -> None:
    text = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")
    text = re.sub(r"(?m)^timeout_s = .*$", "", text)
    with pytest.raises(RuleBookError) as err:
        RuleBook.from_toml(text)
    assert err.value.key == "default.machine_silent.timeout_s"


def test_a_rule_book_written_before_max_open_loads_with_its_default() -> None:
    text = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")
    older = re.sub(r"(?m)^max_open = .*$", "", text)
    assert older != text
    assert RuleBook.from_toml(older).default.dtc.max_open == 32
    tighter = _plus('[model."SY16C"]\nclass = "excavator"\n[model."SY16C".dtc]\nmax_open = 5')
    assert RuleBook.from_toml(tighter).for_machine("SY16C", "excavator").dtc.max_open == 5
    for bad in ("0", "10001", "2.5", "true"):
        with pytest.raises(RuleBookError) as err:
            RuleBook.from_toml(
                _toml_with("default.dtc", f"max_open = {bad}").replace("max_open = 32", "", 1)
            )
        assert err.value.key == "default.dtc.max_open", bad


def test_unknown_top_level_table_is_reported() -> None:
    with pytest.raises(RuleBookError) as err:
        RuleBook.from_toml("[defaults]\n")
    assert err.value.key == "defaults"


def test_invalid_toml_is_a_rule_book_error() -> None:
    with pytest.raises(RuleBookError):
        RuleBook.from_toml("[default\n")
