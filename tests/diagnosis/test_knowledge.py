"""The knowledge base: the packaged data is complete and consistent, lookups resolve as documented,
and a broken copy is refused with the key that is wrong."""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import diagnosis
from diagnosis import events
from diagnosis.events import Severity, dtc_code
from diagnosis.knowledge import (
    KNOWN_FAULTS,
    Diagnosis,
    KnowledgeBase,
    KnowledgeBaseError,
    UnknownFaultError,
)
from diagnosis.signals import SIGNAL_NAMES

PACKAGED = Path(diagnosis.__file__).parent / "data" / "knowledge.toml"
UNLISTED_SPN = 520_000  # proprietary range: no base will ever list it
SEVERITY_RANK = {Severity.INFO: 0, Severity.MINOR: 1, Severity.MAJOR: 2, Severity.CRITICAL: 3}

# The J1939 codes the brief requires, per SPN: the FMIs that must have their own (non-generic)
# diagnosis. The content itself is data and is not repeated here.
REQUIRED_DTCS: dict[int, tuple[int, ...]] = {
    100: (1, 17, 18),
    110: (0, 15, 16),
    1638: (0, 15, 16),
    96: (1, 17, 18),
    168: (0, 1, 3, 4, 15, 16, 17, 18),
    190: (0,),
    107: (0, 15, 16),
    **dict.fromkeys(range(651, 657), (5, 6, 7)),
    94: (1, 17, 18),
    97: (0, 15, 16),
    102: (1, 17, 18),
    629: (12, 31),
    639: (2, 9),
}

# J1939 codes that are the same physical fault as a rule's, so they share its content.
SAME_AS_RULE = [
    ("dtc_100_1", events.LOW_OIL_PRESSURE),
    ("dtc_100_17", events.LOW_OIL_PRESSURE),
    ("dtc_100_18", events.LOW_OIL_PRESSURE),
    ("dtc_110_0", events.ENGINE_OVERHEAT),
    ("dtc_110_16", events.ENGINE_OVERHEAT),
    ("dtc_1638_0", events.HYDRAULIC_OVERHEAT),
    ("dtc_168_1", events.CHARGING_FAILURE),
    ("dtc_168_4", events.CHARGING_FAILURE),
]

# Most severe level first: the severity must not increase along each tuple.
FMI_SEVERITY_ORDER = [
    (100, (1, 18, 17)),
    (110, (0, 16, 15)),
    (1638, (0, 16, 15)),
    (96, (1, 18, 17)),
    (168, (1, 18, 17)),
    (168, (0, 16, 15)),
    (107, (0, 16, 15)),
    (94, (1, 18, 17)),
    (102, (1, 18, 17)),
    (97, (0, 16, 15)),
]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


@pytest.fixture
def document() -> dict[str, Any]:
    return tomllib.loads(PACKAGED.read_text(encoding="utf-8"))


def content(d: Diagnosis) -> tuple[object, ...]:
    """What a shared entry determines: everything but fault code, title, severity, J1939 fields."""
    return (d.summary, d.causes, d.remote_steps, d.remote_fixable, d.parts, d.skills)


def generic_content(kb: KnowledgeBase) -> tuple[object, ...]:
    return content(kb.diagnose(dtc_code(UNLISTED_SPN, 31)))


def to_toml(document: dict[str, Any]) -> str:
    """A TOML rendering of a parsed document (stdlib reads TOML but does not write it).

    Every top-level key becomes `key = { ... }` with inline tables; JSON string escapes are valid
    TOML basic-string escapes for the text we have.
    """

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(item) for item in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))

    return "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in document.items())


def write(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "knowledge.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    return path


def all_codes(kb: KnowledgeBase) -> list[str]:
    dtcs = [dtc_code(spn, fmi) for spn in kb.spns for fmi in range(32)]
    return [*kb.faults, *dtcs, dtc_code(UNLISTED_SPN, 0), dtc_code(100, 99)]


# --- the packaged base -------------------------------------------------------------------------


def test_packaged_base_covers_every_fault_code_of_the_engine(kb: KnowledgeBase) -> None:
    assert set(kb.faults) == {*events.RULE_FAULTS, events.UNEXPLAINED_ANOMALY}
    assert set(KNOWN_FAULTS) == set(kb.faults)
    for fault in kb.faults:
        d = kb.diagnose(fault)
        assert d.fault == fault
        assert (d.spn, d.fmi) == (None, None)
        assert d.title
        assert d.summary
        assert isinstance(d.severity, Severity)
        assert d.causes
        assert d.remote_steps
        assert d.skills
        assert d.signals


def test_every_diagnosis_is_consistent_with_the_catalogues(kb: KnowledgeBase) -> None:
    for code in all_codes(kb):
        d = kb.diagnose(code)
        assert set(d.skills) <= set(kb.skills), code
        assert set(d.signals) <= set(SIGNAL_NAMES), code
        assert len(set(d.signals)) == len(d.signals), code
        assert all(part.quantity > 0 and part.name for part in d.parts), code
        assert all(0.0 <= cause.likelihood <= 1.0 for cause in d.causes), code
        assert sum(cause.likelihood for cause in d.causes) == pytest.approx(1.0, abs=0.05), code


def test_a_part_number_always_has_the_same_name(kb: KnowledgeBase) -> None:
    names: dict[str, set[str]] = {}
    for code in all_codes(kb):
        for part in kb.diagnose(code).parts:
            names.setdefault(part.part_no, set()).add(part.name)
    assert names
    assert all(len(found) == 1 for found in names.values()), names


def test_causes_are_ranked_most_likely_first(kb: KnowledgeBase) -> None:
    for code in all_codes(kb):
        likelihoods = [cause.likelihood for cause in kb.diagnose(code).causes]
        assert likelihoods == sorted(likelihoods, reverse=True), code


def test_causes_listed_out_of_order_are_ranked_at_load(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    entry = document["fault"][events.ENGINE_OVERHEAT]
    entry["causes"] = sorted(entry["causes"], key=lambda c: c["likelihood"])  # least likely first
    assert entry["causes"][0]["likelihood"] < entry["causes"][-1]["likelihood"]
    causes = KnowledgeBase.load(write(tmp_path, document)).diagnose(events.ENGINE_OVERHEAT).causes
    assert [c.likelihood for c in causes] == sorted((c.likelihood for c in causes), reverse=True)


def test_fmi_descriptions_follow_j1939_73(kb: KnowledgeBase) -> None:
    assert "below normal operational range - most severe" in kb.fmi_description(1).lower()
    assert "above normal operational range - most severe" in kb.fmi_description(0).lower()
    assert "open circuit" in kb.fmi_description(5).lower()
    assert "mechanical" in kb.fmi_description(7).lower()
    assert "condition exists" in kb.fmi_description(31).lower()
    assert all(kb.fmi_description(fmi) for fmi in range(32))


# --- J1939 -------------------------------------------------------------------------------------


def test_low_oil_pressure_code_gets_the_rule_diagnosis_with_the_fmi_in_the_title(
    kb: KnowledgeBase,
) -> None:
    d = kb.diagnose("dtc_100_1")
    assert content(d) == content(kb.diagnose(events.LOW_OIL_PRESSURE))
    assert d.severity is Severity.CRITICAL
    assert d.title.lower() == (
        "engine oil pressure: data valid but below normal operational range - most severe level"
    )
    assert (d.fault, d.spn, d.fmi) == ("dtc_100_1", 100, 1)
    assert d.signals[0] == "oil_pressure_kpa"


@pytest.mark.parametrize(("code", "fault"), SAME_AS_RULE)
def test_j1939_code_of_a_rule_fault_shares_its_content(
    kb: KnowledgeBase, code: str, fault: str
) -> None:
    assert content(kb.diagnose(code)) == content(kb.diagnose(fault))


@pytest.mark.parametrize(
    ("spn", "fmi"), [(spn, fmi) for spn, fmis in REQUIRED_DTCS.items() for fmi in fmis]
)
def test_required_j1939_codes_have_their_own_diagnosis(
    kb: KnowledgeBase, spn: int, fmi: int
) -> None:
    d = kb.diagnose(dtc_code(spn, fmi))
    assert spn in kb.spns
    assert content(d) != generic_content(kb)
    assert (d.spn, d.fmi) == (spn, fmi)
    name, _, fmi_text = d.title.partition(": ")
    assert name
    assert f"SPN {spn}" not in name
    assert fmi_text.lower() == kb.fmi_description(fmi).lower()


@pytest.mark.parametrize(("spn", "fmis"), FMI_SEVERITY_ORDER)
def test_more_severe_fmi_levels_never_get_a_milder_severity(
    kb: KnowledgeBase, spn: int, fmis: tuple[int, ...]
) -> None:
    ranks = [SEVERITY_RANK[kb.diagnose(dtc_code(spn, fmi)).severity] for fmi in fmis]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[0] > ranks[-1]


def test_injector_mechanical_failure_differs_from_circuit_failure(kb: KnowledgeBase) -> None:
    for spn in range(651, 657):
        open_circuit, grounded, mechanical = (kb.diagnose(dtc_code(spn, f)) for f in (5, 6, 7))
        assert content(open_circuit) == content(grounded)
        assert content(mechanical) != content(open_circuit)
        assert "electrical" in open_circuit.skills


def test_overspeed_is_critical(kb: KnowledgeBase) -> None:
    assert kb.diagnose("dtc_190_0").severity is Severity.CRITICAL


def test_unlisted_fmi_of_a_listed_spn_falls_back_to_the_spn_entry(kb: KnowledgeBase) -> None:
    # 629 has SPN-level content only; 100 has none, so it falls through to the generic content.
    assert content(kb.diagnose("dtc_629_2")) == content(kb.diagnose("dtc_629_12"))
    assert content(kb.diagnose("dtc_629_2")) != generic_content(kb)
    d = kb.diagnose("dtc_100_20")
    assert content(d) == generic_content(kb)
    assert d.title.partition(": ")[0] == kb.diagnose("dtc_100_1").title.partition(": ")[0]
    assert d.signals[0] == "oil_pressure_kpa"


def test_severity_overrides_keep_the_content_they_override(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    document["j1939"]["spn"]["629"]["severity"] = "critical"
    document["j1939"]["spn"]["629"]["fmi"] = {"2": {}, "9": {"severity": "info"}}
    kb = KnowledgeBase.load(write(tmp_path, document))
    spn_level, empty_fmi, fmi_override = (kb.diagnose(f"dtc_629_{f}") for f in (12, 2, 9))
    assert spn_level.severity is Severity.CRITICAL
    assert empty_fmi.severity is Severity.CRITICAL
    assert fmi_override.severity is Severity.INFO
    assert content(spn_level) == content(empty_fmi) == content(fmi_override)


def test_unknown_spn_gets_the_generic_entry_with_spn_and_fmi_in_the_title(
    kb: KnowledgeBase,
) -> None:
    d = kb.diagnose(dtc_code(UNLISTED_SPN, 2))
    assert (d.spn, d.fmi) == (UNLISTED_SPN, 2)
    assert str(UNLISTED_SPN) in d.title
    assert kb.fmi_description(2).lower() in d.title.lower()
    assert d.causes
    assert d.remote_steps
    assert content(kb.diagnose(dtc_code(UNLISTED_SPN + 1, 9))) == content(d)


def test_undefined_fmi_still_gets_a_diagnosis(kb: KnowledgeBase) -> None:
    d = kb.diagnose(dtc_code(UNLISTED_SPN, 40))
    assert "40" in d.title


def test_unknown_fault_code_is_refused(kb: KnowledgeBase) -> None:
    with pytest.raises(UnknownFaultError) as info:
        kb.diagnose("flux_capacitor_failure")
    assert info.value.fault == "flux_capacitor_failure"


def test_diagnose_is_deterministic(kb: KnowledgeBase) -> None:
    again = KnowledgeBase.load()
    first = [kb.diagnose(code) for code in all_codes(kb)]
    assert first == [kb.diagnose(code) for code in all_codes(kb)]
    assert first == [again.diagnose(code) for code in all_codes(again)]
    assert kb.faults == again.faults


# --- loading copies ----------------------------------------------------------------------------


def test_an_edited_copy_is_loaded_from_its_path(tmp_path: Path, document: dict[str, Any]) -> None:
    document["fault"][events.MACHINE_SILENT]["title"] = "Funkstille"
    kb = KnowledgeBase.load(write(tmp_path, document))
    assert kb.diagnose(events.MACHINE_SILENT).title == "Funkstille"


def test_an_unchanged_copy_loads_identically(
    kb: KnowledgeBase, tmp_path: Path, document: dict[str, Any]
) -> None:
    copied = KnowledgeBase.load(write(tmp_path, document))
    assert [copied.diagnose(c) for c in all_codes(kb)] == [kb.diagnose(c) for c in all_codes(kb)]


def set_in(path: str, new: object) -> Callable[[dict[str, Any]], None]:
    """A mutation setting the value at a dotted path (`a.b.0.c`: digits index lists)."""

    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = new

    return mutate


def delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def append_skill(document: dict[str, Any]) -> None:
    document["fault"]["charging_failure"]["skills"].insert(0, "plumbing")


def unknown_fault(document: dict[str, Any]) -> None:
    document["fault"]["flux_capacitor"] = copy.deepcopy(document["fault"]["engine_overheat"])


BROKEN = [
    pytest.param(delete("fault.engine_overheat"), "fault.engine_overheat", id="missing-fault"),
    pytest.param(unknown_fault, "fault.flux_capacitor", id="unknown-fault"),
    pytest.param(
        set_in("fault.low_oil_pressure.severity", "urgent"),
        "fault.low_oil_pressure.severity",
        id="bad-severity",
    ),
    pytest.param(
        set_in("j1939.spn.100.fmi.1.severity", "catastrophic"),
        "j1939.spn.100.fmi.1.severity",
        id="bad-severity-override",
    ),
    pytest.param(append_skill, "fault.charging_failure.skills[0]", id="unknown-skill"),
    pytest.param(
        set_in("j1939.spn.100.fmi.1.see", "fault.low_oil_presure"),
        "j1939.spn.100.fmi.1.see",
        id="dangling-fault-reference",
    ),
    pytest.param(
        set_in("j1939.spn.629.see", "shared.nothing"),
        "j1939.spn.629.see",
        id="dangling-shared-reference",
    ),
    pytest.param(
        set_in("fault.engine_overheat.causes.0.likelihood", 1.5),
        "fault.engine_overheat.causes[0].likelihood",
        id="likelihood-above-one",
    ),
    pytest.param(
        set_in("fault.engine_overheat.causes.1.likelihood", 0.9),
        "fault.engine_overheat.causes",
        id="likelihoods-do-not-sum-to-one",
    ),
    pytest.param(
        set_in("fault.low_oil_pressure.parts.0.quantity", 0),
        "fault.low_oil_pressure.parts[0].quantity",
        id="zero-quantity",
    ),
    pytest.param(
        set_in("fault.low_oil_pressure.parts.0.quantity", 1.5),
        "fault.low_oil_pressure.parts[0].quantity",
        id="fractional-quantity",
    ),
    pytest.param(
        set_in("fault.low_oil_pressure.parts.0.part_no", "XX-0000"),
        "fault.low_oil_pressure.parts[0].part_no",
        id="part-not-in-catalogue",
    ),
    pytest.param(
        set_in("fault.hydraulic_overheat.signals", ["hydraulic_oil_temp_c", "boom_angle_deg"]),
        "fault.hydraulic_overheat.signals[1]",
        id="unknown-signal",
    ),
    pytest.param(
        set_in("fault.outside_site.remote_step", ["Call the site"]),
        "fault.outside_site.remote_step",
        id="misspelt-key",
    ),
    pytest.param(
        delete("fault.outside_site.summary"), "fault.outside_site.summary", id="no-summary"
    ),
    pytest.param(delete("fmi.13"), "fmi.13", id="missing-fmi-text"),
    pytest.param(
        set_in("j1939.spn.629.summary", "Own text next to a reference"),
        "j1939.spn.629",
        id="see-and-own-content",
    ),
    pytest.param(
        set_in("j1939.spn.100.fmi.44", {"see": "fault.low_oil_pressure"}),
        "j1939.spn.100.fmi.44",
        id="fmi-out-of-range",
    ),
]


@pytest.mark.parametrize(("mutate", "key"), BROKEN)
def test_broken_copy_is_refused_naming_the_key(
    tmp_path: Path,
    document: dict[str, Any],
    mutate: Callable[[dict[str, Any]], None],
    key: str,
) -> None:
    mutate(document)
    path = write(tmp_path, document)
    with pytest.raises(KnowledgeBaseError) as info:
        KnowledgeBase.load(path)
    assert info.value.key == key
    assert info.value.source == str(path)
    assert key in str(info.value)


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "knowledge.toml"
    path.write_text("[fault\n", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match="not valid TOML"):
        KnowledgeBase.load(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="cannot read"):
        KnowledgeBase.load(tmp_path / "absent.toml")


# --- broken relations ---------------------------------------------------------------------------

RELATION_DETAIL = (
    "anomaly score 1.52 above the model's threshold 1.00; relation broken: oil_pressure_kpa low"
    " for engine_speed_rpm and coolant_temp_c (-9.1); oil_pressure_kpa z=-3.0"
)


def test_a_broken_relation_that_points_to_a_fault_gets_that_faults_diagnosis(
    kb: KnowledgeBase,
) -> None:
    d = kb.diagnose_alarm(events.UNEXPLAINED_ANOMALY, RELATION_DETAIL)
    oil = kb.diagnose(events.LOW_OIL_PRESSURE)
    assert d.fault == events.LOW_OIL_PRESSURE
    assert d.title == f"{oil.title}: oil_pressure_kpa low for engine_speed_rpm and coolant_temp_c"
    assert (d.causes, d.parts, d.skills) == (oil.causes, oil.parts, oil.skills)
    assert kb.relation_fault("oil_pressure_kpa", "high") is None


def test_other_anomalies_stay_unexplained(kb: KnowledgeBase) -> None:
    unexplained = kb.diagnose(events.UNEXPLAINED_ANOMALY)
    high = RELATION_DETAIL.replace("oil_pressure_kpa low", "oil_pressure_kpa high")
    assert kb.diagnose_alarm(events.UNEXPLAINED_ANOMALY, high) == unexplained
    assert kb.diagnose_alarm(events.UNEXPLAINED_ANOMALY, "oil_pressure_kpa z=-3.0") == unexplained
    # Only the model's alarms are read for relations; a rule alarm keeps its own diagnosis.
    assert kb.diagnose_alarm(events.ENGINE_OVERHEAT, RELATION_DETAIL) == kb.diagnose(
        events.ENGINE_OVERHEAT
    )


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        pytest.param({"oil_pressure low": "low_oil_pressure"}, "expected", id="unknown_signal"),
        pytest.param({"oil_pressure_kpa lower": "low_oil_pressure"}, "expected", id="side"),
        pytest.param({"oil_pressure_kpa low": "oil_gone"}, "unknown fault", id="fault"),
    ],
)
def test_a_bad_relation_entry_is_refused_with_its_key(
    tmp_path: Path, document: dict[str, Any], entry: dict[str, str], reason: str
) -> None:
    document["relation"] = entry
    with pytest.raises(KnowledgeBaseError) as info:
        KnowledgeBase.load(write(tmp_path, document))
    assert info.value.key == f"relation.{next(iter(entry))}"
    assert reason in info.value.reason
