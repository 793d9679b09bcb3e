"""The knowledge base's texts in Simplified Chinese, beside the English.

This module owns which keys of `data/knowledge.toml` carry a translation, their checks, and the
report of what is not translated. A translated text sits next to its English one with the same
name and the suffix `_zh`: `title_zh`, `summary_zh`, a cause's `text_zh`, `remote_steps_zh` (a
list as long as `remote_steps`, in the same order), an SPN's `name_zh`; and three tables keyed
like their English ones: `[skills_zh]`, `[parts_zh]`, `[fmi_zh]`; and `[relation_zh]`, keyed like
`[relation]`, telling each broken relation in words ("机油压力低于关联信号所预期的值"), since the
English names it by its codes. Every translation is optional
(an operator's copy without them loads, and shows English), but one that is there must be a
non-empty string, a list of the right length, or name a key its English table has.
`untranslated` lists the dotted key paths of English texts without their Chinese (the shipped
base has none: `tests/diagnosis/test_knowledge_zh.py`).

It must never look a fault up, never read a file and never do I/O (`diagnosis.knowledge_parse`
calls it while it parses). Standard library only, plus `diagnosis.errors`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from diagnosis.errors import KnowledgeBaseError

__all__ = ["LANGUAGES", "NO_NAMES", "ZH", "ZH_CN", "Names", "names", "optional_text", "steps"]

ZH: Final = "_zh"
"""Suffix of a key holding the Simplified Chinese of the key before it."""
ZH_CN: Final = "zh-CN"
LANGUAGES: Final = ("en", ZH_CN)
"""The languages a diagnosis can be given in (BCP 47 tags); English is the base's own."""

_Table = Mapping[str, object]
_CONTENT_TABLES: Final = ("shared",)


@dataclass(frozen=True, slots=True)
class Names:
    """The translated texts that are not part of an entry's content, and the gaps.

    Attributes:
        titles: Fault code -> title.
        fmi_texts: FMI -> its J1939-73 meaning.
        skills: Skill -> description.
        parts: Part number -> catalogue name.
        relations: Broken relation (`"oil_pressure_kpa low"`) -> what it means, in words.
        untranslated: Dotted key paths of English texts without a translation, in file order.
    """

    titles: Mapping[str, str] = field(default_factory=dict)
    fmi_texts: Mapping[int, str] = field(default_factory=dict)
    skills: Mapping[str, str] = field(default_factory=dict)
    parts: Mapping[str, str] = field(default_factory=dict)
    relations: Mapping[str, str] = field(default_factory=dict)
    untranslated: tuple[str, ...] = ()


NO_NAMES: Final = Names()


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeBaseError(key, "expected a non-empty string")
    return value.strip()


def optional_text(table: _Table, name: str, key: str) -> str | None:
    """The translation of `table[name]` (its `<name>_zh`), or None when there is none."""
    zh_key = f"{name}{ZH}"
    if zh_key not in table:
        return None
    return _text(table[zh_key], f"{key}.{zh_key}")


def steps(table: _Table, key: str, count: int) -> tuple[str, ...] | None:
    """The translated remote-fix steps, one for each English step, or None when absent."""
    zh_key = f"remote_steps{ZH}"
    if zh_key not in table:
        return None
    value = table[zh_key]
    if not isinstance(value, list):
        raise KnowledgeBaseError(f"{key}.{zh_key}", "expected an array")
    if len(value) != count:
        raise KnowledgeBaseError(
            f"{key}.{zh_key}", f"has {len(value)} step(s); remote_steps has {count}"
        )
    return tuple(_text(step, f"{key}.{zh_key}[{i}]") for i, step in enumerate(value))


def _name_map(document: _Table, name: str, english: Mapping[str, str]) -> dict[str, str]:
    zh_key = f"{name}{ZH}"
    value = document.get(zh_key, {})
    if not isinstance(value, dict):
        raise KnowledgeBaseError(zh_key, f"expected a table, got {type(value).__name__}")
    for entry in value:
        if entry not in english:
            raise KnowledgeBaseError(f"{zh_key}.{entry}", f"not in [{name}]")
    return {entry: _text(text, f"{zh_key}.{entry}") for entry, text in value.items()}


def names(
    document: _Table,
    skills: Mapping[str, str],
    parts: Mapping[str, str],
    fmi_texts: Mapping[int, str],
    relations: Mapping[str, str],
) -> Names:
    """The translated vocabulary, titles, FMI texts and relations of a valid English document.

    Raises:
        KnowledgeBaseError: A translation is not a non-empty string, or names a skill, part,
            FMI, fault or relation the English does not have.
    """
    fmi = {
        int(k): v for k, v in _name_map(document, "fmi", {str(k): "" for k in fmi_texts}).items()
    }
    titles: dict[str, str] = {}
    faults = document.get("fault", {})
    if isinstance(faults, dict):
        for code, entry in faults.items():
            if isinstance(entry, dict):
                title = optional_text(entry, "title", f"fault.{code}")
                if title is not None:
                    titles[code] = title
    return Names(
        titles=titles,
        fmi_texts=fmi,
        skills=_name_map(document, "skills", skills),
        parts=_name_map(document, "parts", parts),
        relations=_name_map(document, "relation", relations),
        untranslated=tuple(_gaps(document)),
    )


def _gaps(document: _Table) -> Iterator[str]:
    """Dotted key paths of English texts without a translation."""
    for table_name in ("skills", "parts", "fmi", "relation"):
        english, zh = document.get(table_name, {}), document.get(f"{table_name}{ZH}", {})
        if isinstance(english, dict) and isinstance(zh, dict):
            yield from (f"{table_name}.{k}" for k in english if k not in zh)
    for namespace in ("fault", *_CONTENT_TABLES):
        entries = document.get(namespace, {})
        if isinstance(entries, dict):
            for name, entry in entries.items():
                yield from _entry_gaps(entry, f"{namespace}.{name}", ("title",))
    j1939 = document.get("j1939", {})
    if isinstance(j1939, dict):
        yield from _entry_gaps(j1939.get("generic", {}), "j1939.generic", ())
        yield from _spn_gaps(j1939.get("spn", {}))


def _spn_gaps(spns: object) -> Iterator[str]:
    if not isinstance(spns, dict):
        return
    for raw, entry in spns.items():
        key = f"j1939.spn.{raw}"
        yield from _entry_gaps(entry, key, ("name",))
        fmis = entry.get("fmi", {}) if isinstance(entry, dict) else {}
        if isinstance(fmis, dict):
            for fmi, fmi_entry in fmis.items():
                yield from _entry_gaps(fmi_entry, f"{key}.fmi.{fmi}", ())


def _entry_gaps(entry: object, key: str, own: tuple[str, ...]) -> Iterator[str]:
    if not isinstance(entry, dict):
        return
    for name in (*own, "summary", "remote_steps"):
        if name in entry and f"{name}{ZH}" not in entry:
            yield f"{key}.{name}"
    causes = entry.get("causes", [])
    if isinstance(causes, list):
        for i, cause in enumerate(causes):
            if isinstance(cause, dict) and f"text{ZH}" not in cause:
                yield f"{key}.causes[{i}].text"
