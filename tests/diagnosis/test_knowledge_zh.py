"""The knowledge base in Simplified Chinese: every text of the shipped base has its translation,
a diagnosis in Chinese keeps the codes, numbers and order of the English, and a translation
that does not fit its English is refused at load with its key."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from diagnosis.knowledge import KnowledgeBase, KnowledgeBaseError

KB = KnowledgeBase.load()
HAN = re.compile(r"[\u4e00-\u9fff]")
CODES = [*KB.faults, "dtc_100_1", "dtc_651_7", "dtc_97_0", "dtc_629_12", "dtc_99999_31"]


def _packaged() -> str:
    return (resources.files("diagnosis") / "data" / "knowledge.toml").read_text("utf-8")


def test_every_text_of_the_shipped_base_has_its_chinese() -> None:
    assert KB.untranslated == ()


@pytest.mark.parametrize("code", CODES)
def test_a_chinese_diagnosis_is_the_english_one_in_other_words(code: str) -> None:
    en, zh = KB.diagnose(code), KB.diagnose(code, "zh-CN")
    assert (zh.lang, en.lang) == ("zh-CN", "en")
    assert (zh.severity, zh.skills, zh.signals, zh.remote_fixable) == (
        en.severity, en.skills, en.signals, en.remote_fixable,
    )  # fmt: skip
    assert [c.likelihood for c in zh.causes] == [c.likelihood for c in en.causes]
    assert [(p.part_no, p.quantity) for p in zh.parts] == [
        (p.part_no, p.quantity) for p in en.parts
    ]
    assert len(zh.remote_steps) == len(en.remote_steps)
    texts = [zh.title, zh.summary, *(c.text for c in zh.causes), *zh.remote_steps,
             *(p.name for p in zh.parts), *zh.skill_names]  # fmt: skip
    assert all(HAN.search(t) for t in texts), "a text is not in Chinese"
    assert not any(HAN.search(t) for t in (en.title, en.summary, *en.remote_steps))


def test_causes_keep_their_translation_when_ranked(tmp_path: Path) -> None:
    text = _packaged().replace('text_zh = "软管、散热器', 'text_zh = "低液位 软管、散热器', 1)
    path = tmp_path / "kb.toml"
    path.write_text(text, encoding="utf-8")
    kb = KnowledgeBase.load(path)
    for en, zh in zip(
        kb.diagnose("engine_overheat").causes, kb.diagnose("engine_overheat", "zh-CN").causes,
        strict=True,
    ):  # fmt: skip
        assert ("coolant level" in en.text) == zh.text.startswith("低液位")


def test_a_base_without_chinese_loads_and_shows_english() -> None:
    kb = KnowledgeBase.loads(_without_chinese(_packaged()))
    assert kb.diagnose("low_oil_pressure", "zh-CN").title == "Low engine oil pressure"
    assert kb.diagnose("dtc_100_1", "zh-CN").title == KB.diagnose("dtc_100_1").title
    assert "fault.low_oil_pressure.title" in kb.untranslated
    assert "parts.OF-2010" in kb.untranslated


def _without_chinese(text: str) -> str:
    """The packaged base with every `_zh` key and table taken out."""
    out: list[str] = []
    until = None  # the line that ends the block being dropped
    for line in text.split("\n"):
        if until is not None:
            if line == until:
                until = None
            continue
        if re.match(r"^\[\w+_zh\]$", line):
            until = ""
        elif line.startswith("remote_steps_zh = ["):
            until = "]"
        elif not re.match(r"^\w+_zh = ", line):
            out.append(re.sub(r', text_zh = "[^"]*"', "", line))
    return "\n".join(out)


STEPS = 'remote_steps_zh = [\n  "请操作员放下'
# (text replaced, its replacement, the key the error names)
MISFITS = [
    (STEPS, STEPS.replace("[", '[\n  "多一步",'), "fault.low_oil_pressure.remote_steps_zh"),
    ('title_zh = "发动机机油压力低"', 'title_zh = ""', "fault.low_oil_pressure.title_zh"),
    ("[parts_zh]\n", '[parts_zh]\n"XX-0000" = "无此零件"\n', "parts_zh.XX-0000"),
    ("[skills_zh]\n", '[skills_zh]\nwelding = "焊接"\n', "skills_zh.welding"),
    ('summary_zh = "发动机在', "summary_zh = 7 #", "fault.low_oil_pressure.summary_zh"),
    (
        "[relation_zh]\n",
        '[relation_zh]\n"load_pct high" = "负荷偏高"\n',
        "relation_zh.load_pct high",
    ),
    ('"battery_v low" = "蓄电池', '"battery_v low" = "" #', "relation_zh.battery_v low"),
]


@pytest.mark.parametrize(("old", "new", "key"), MISFITS)
def test_a_translation_that_does_not_fit_is_refused_with_its_key(
    old: str, new: str, key: str
) -> None:
    assert old in _packaged()
    with pytest.raises(KnowledgeBaseError) as caught:
        KnowledgeBase.loads(_packaged().replace(old, new, 1))
    assert caught.value.key == key


def test_only_known_languages() -> None:
    with pytest.raises(ValueError, match="fr"):
        KB.diagnose("low_oil_pressure", "fr")


def test_a_step_ticked_in_one_language_reads_in_the_other() -> None:
    en, zh = KB.diagnose("engine_overheat"), KB.diagnose("engine_overheat", "zh-CN")
    assert KB.translate_step("engine_overheat", zh.remote_steps[3], "en") == en.remote_steps[3]
    assert KB.translate_step("engine_overheat", en.remote_steps[0], "zh-CN") == zh.remote_steps[0]
    assert KB.translate_step("engine_overheat", "called the site", "zh-CN") == "called the site"
    assert KB.translate_step("not_a_fault", "x", "en") == "x"


RELATION_DETAIL = (
    "anomaly score 1.52 above the model's threshold 1.00; relation broken: oil_pressure_kpa low"
    " for engine_speed_rpm, load_pct and coolant_temp_c (-9.1); oil_pressure_kpa z=-3.0"
)


def test_a_broken_relation_is_told_in_chinese_words() -> None:
    zh = KB.diagnose_alarm("unexplained_anomaly", RELATION_DETAIL, "zh-CN")
    oil = KB.diagnose("low_oil_pressure", "zh-CN")
    assert zh.fault == "low_oil_pressure"
    assert zh.title == f"{oil.title}\uff1a机油压力相对其关联信号偏低"
    assert "engine_speed_rpm\u3001load_pct\u3001coolant_temp_c" in zh.summary
    assert zh.summary.endswith(oil.summary)
    assert (zh.causes, zh.remote_steps) == (oil.causes, oil.remote_steps)
    assert " for " not in zh.title
    assert " and " not in zh.summary


def test_a_relation_without_its_chinese_is_titled_with_its_codes() -> None:
    kb = KnowledgeBase.loads(_without_chinese(_packaged()))
    assert "relation.oil_pressure_kpa low" in kb.untranslated
    zh = kb.diagnose_alarm("unexplained_anomaly", RELATION_DETAIL, "zh-CN")
    assert zh.title.endswith(
        ": oil_pressure_kpa low for engine_speed_rpm, load_pct and coolant_temp_c"
    )
