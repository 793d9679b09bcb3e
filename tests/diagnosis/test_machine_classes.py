"""Machine class and model designation: which thresholds and which anomaly model a machine gets.

The rule book is chosen by class (`[class.<name>]`) with per-model overrides
(`[model."<designation>"]`, laid over the class it names); the anomaly model by designation,
falling back to the machine's class.
"""

from __future__ import annotations

from importlib import resources

import pytest

from diagnosis import events as ev
from diagnosis.engine import Engine
from diagnosis.events import Transition
from diagnosis.frame import MachineInfo
from diagnosis.rules import RuleBook, RuleBookError
from tests.diagnosis.test_engine import (
    SITE,
    Stream,
    _FixedScorer,
    frame_of,
    of,
    settled_lead,
)


def _book(extra: str = "") -> RuleBook:
    text = resources.files("diagnosis").joinpath("data/rules.toml").read_text("utf-8")
    return RuleBook.from_toml(f"{text}\n{extra}\n")


SY215C = """
[model."SY215C"]
class = "excavator"

[model."SY215C".engine_power_loss]
rated_rpm = 1950.0

[model."320 GC".engine_overheat]
raise_c = 108.0
"""


def test_packaged_rule_book_has_the_classes_of_the_simulated_fleet() -> None:
    book = RuleBook.load()
    assert {"excavator", "pump_truck", "crane"} <= set(book.classes)


def test_a_designation_without_its_own_table_gets_its_class() -> None:
    book = RuleBook.load()
    crane = book.classes["crane"]
    assert book.for_machine("STC500", "crane") is crane
    assert book.for_machine("STC500", "crane").engine_power_loss.rated_rpm == 2100.0
    assert book.for_machine("STC500", "grader") is book.default  # a class without a table
    assert book.for_machine("STC500", "") is book.default


def test_a_model_table_lays_over_the_class_it_names() -> None:
    book = _book(SY215C)
    sy = book.for_machine("SY215C", "excavator")
    assert sy.engine_power_loss.rated_rpm == 1950.0
    assert sy.low_oil_pressure == book.classes["excavator"].low_oil_pressure
    # The designation is the more specific fact: its table wins whatever class it is filed in.
    assert book.for_machine("SY215C", "crane") is sy
    # A model table that names no class lays over the default.
    cat = book.for_machine("320 GC", "excavator")
    assert cat.engine_overheat.raise_c == 108.0
    assert cat.engine_power_loss == book.default.engine_power_loss


def test_a_model_table_naming_a_class_without_a_table_is_refused() -> None:
    with pytest.raises(RuleBookError) as err:
        _book('[model."PC200-8"]\nclass = "excavtor"\n')
    assert err.value.key == "model.PC200-8.class"


def test_engine_chooses_thresholds_by_class_and_model() -> None:
    book = _book(SY215C)
    engine = Engine(book)
    # Rated speeds: SY215C 1950 (its own table), other excavators 2000, pump trucks 1900, cranes
    # 2100, classes without a table the default's 2000. Power loss raises below 80 % of rated.
    rpm = 1580.0
    infos = [
        MachineInfo("sy", "SY215C", *SITE, machine_class="excavator"),
        MachineInfo("ex", "SY365H", *SITE, machine_class="excavator"),
        MachineInfo("pt", "SY5419THB 56E", *SITE, machine_class="pump_truck"),
        MachineInfo("cr", "STC500", *SITE, machine_class="crane"),
        MachineInfo("gr", "STG190C", *SITE, machine_class="grader"),
    ]
    engine.restore(infos, frame_of(), {})
    streams = [Stream(i.machine_id).add(60, engine_speed_rpm=rpm, load_pct=95.0) for i in infos]
    raised = of(engine.process(frame_of(*streams)), ev.ENGINE_POWER_LOSS, Transition.RAISED)
    assert sorted(e.machine_id for e in raised) == ["cr", "ex", "gr"]


def test_anomaly_model_of_the_designation_before_the_class_model() -> None:
    book = RuleBook.load()
    w = round(book.default.anomaly.window_s)
    lead = settled_lead()
    by_model, by_class = _FixedScorer(), _FixedScorer()
    engine = Engine(book, {"SY215C": by_model}, classes={"excavator": by_class})
    infos = [
        MachineInfo("own", "SY215C", *SITE, machine_class="excavator"),
        MachineInfo("fallback", "SY365H", *SITE, machine_class="excavator"),
        MachineInfo("none", "STC500", *SITE, machine_class="crane"),
    ]
    engine.restore(infos, frame_of(), {})
    streams = [
        Stream(m).add(lead + 2 * w).add(4 * w, oil_pressure_kpa=190.0).add(2 * w)
        for m in ("own", "fallback", "none")
    ]
    found = of(engine.process(frame_of(*streams)), ev.UNEXPLAINED_ANOMALY, Transition.RAISED)
    assert {e.machine_id for e in found} == {"own", "fallback"}
    assert set(by_model.scored) == {"own"}
    assert set(by_class.scored) == {"fallback"}

    # A model trained for SY365H later takes over from the class model.
    newer = _FixedScorer()
    engine.set_models({"SY215C": by_model, "SY365H": newer}, classes={"excavator": by_class})
    more = [Stream(m, start_s=(lead + 8 * w)).add(3 * w) for m in ("own", "fallback")]
    engine.process(frame_of(*more))
    assert set(newer.scored) == {"fallback"}
