"""The knowledge base file: `data/knowledge.toml` parsed and validated into content values.

This module owns the layout of the knowledge base file and everything checked about it, once, at
load, so that a loaded base cannot fail a lookup: every fault code of the engine has an entry,
severities, likelihoods, quantities, skills, part numbers, signals and `see` references are valid,
and every J1939 entry resolves, inheriting as `diagnosis.knowledge` documents. A broken file
raises `KnowledgeBaseError` with the dotted key path of what is wrong
(`fault.low_oil_pressure.severity`, `j1939.spn.100.fmi.1.see`,
`fault.engine_overheat.causes[2].likelihood`). `parse` turns a parsed TOML document into
`Entries`, made of the values defined here (`Cause`, `Part`, `Content`); `diagnosis.knowledge`
re-exports the public ones.

It must never read a file or parse TOML text (`KnowledgeBase.load` and `loads` do, and name the
source in the errors), never look a fault code up or build a `Diagnosis` (`diagnosis.knowledge`
does; this module never imports it), and never do I/O. Standard library only, plus
`diagnosis.errors`, `diagnosis.events` and `diagnosis.signals`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from diagnosis import events
from diagnosis.errors import DiagnosisError
from diagnosis.events import Severity
from diagnosis.signals import DTC_FMI_MAX, DTC_SPN_MAX, SIGNAL_NAMES

__all__ = [
    "KNOWN_FAULTS",
    "LIKELIHOOD_SUM_TOLERANCE",
    "Cause",
    "Content",
    "Entries",
    "KnowledgeBaseError",
    "Part",
    "Resolved",
    "Spn",
    "parse",
]

KNOWN_FAULTS: Final[tuple[str, ...]] = (*events.RULE_FAULTS, events.UNEXPLAINED_ANOMALY)
"""Fault codes (other than J1939 codes) the engine raises; each needs an entry."""

LIKELIHOOD_SUM_TOLERANCE: Final = 0.05
"""Likelihoods of an entry's causes must sum to 1 within this (they are estimates)."""

_REQUIRED_KEYS: Final = frozenset({"skills", "parts", "fmi", "fault", "shared", "j1939"})
_TOP_KEYS: Final = _REQUIRED_KEYS | {"relation"}
_RELATION_SIDES: Final = ("low", "high")
_CONTENT_KEYS: Final = frozenset(
    {"summary", "causes", "remote_steps", "remote_fixable", "parts", "skills", "signals"}
)
_FAULT_KEYS: Final = _CONTENT_KEYS | {"title", "severity"}
_SHARED_KEYS: Final = _CONTENT_KEYS | {"severity"}
_FMI_ENTRY_KEYS: Final = _SHARED_KEYS | {"see"}
_SPN_ENTRY_KEYS: Final = _FMI_ENTRY_KEYS | {"name", "fmi"}
_SEE_NAMESPACES: Final = ("fault", "shared")

_Table = Mapping[str, object]


class KnowledgeBaseError(DiagnosisError):
    """A knowledge base file that cannot be used.

    Attributes:
        key: Dotted key path of the offending value (`fault.low_oil_pressure.severity`), empty
            when the file as a whole is wrong (unreadable, not TOML).
        reason: What is wrong with it.
        source: The file (or `<packaged>`) it came from.
    """

    def __init__(self, key: str, reason: str, source: str = "<knowledge base>") -> None:
        super().__init__(f"{source}: {key or '<file>'}: {reason}")
        self.key = key
        self.reason = reason
        self.source = source


@dataclass(frozen=True, slots=True)
class Cause:
    """One probable cause of a fault.

    Attributes:
        text: What is wrong, in a technician's words.
        likelihood: Estimated share of cases, 0..1; an entry's causes sum to about 1.
    """

    text: str
    likelihood: float


@dataclass(frozen=True, slots=True)
class Part:
    """A part a visit may need.

    Attributes:
        part_no: Part number (placeholders in the packaged base; see its header).
        name: Catalogue name of the part.
        quantity: How many to bring, a positive integer.
    """

    part_no: str
    name: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Content:
    """Everything of a diagnosis except the fault code, title and J1939 fields."""

    severity: Severity
    summary: str
    causes: tuple[Cause, ...]
    remote_steps: tuple[str, ...]
    remote_fixable: bool
    parts: tuple[Part, ...]
    skills: tuple[str, ...]
    signals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resolved:
    """The content a J1939 entry ends up with, and the severity after overrides."""

    content: Content
    severity: Severity


@dataclass(frozen=True, slots=True)
class Spn:
    """A J1939 parameter: its name, its content per listed FMI, and for any other FMI."""

    name: str
    by_fmi: Mapping[int, Resolved]
    otherwise: Resolved


@dataclass(frozen=True, slots=True)
class Entries:
    """A validated knowledge base file: what `KnowledgeBase` is built from.

    Attributes:
        faults: Per fault code of the engine, in the engine's order: its title and content.
        spns: Per J1939 SPN with an entry, its resolved content.
        generic: The content of any J1939 code without an entry of its own.
        fmi_texts: The J1939-73 meaning of every FMI 0..31.
        skills: The skill vocabulary: skill -> description.
        relations: Per broken relation the anomaly model names, `(signal, "low" | "high")`, the
            fault code it points to (`("oil_pressure_kpa", "low")` -> `low_oil_pressure`).
    """

    faults: Mapping[str, tuple[str, Content]]
    spns: Mapping[int, Spn]
    generic: Content
    fmi_texts: Mapping[int, str]
    skills: Mapping[str, str]
    relations: Mapping[tuple[str, str], str]


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    """What content entries may name: skills and part numbers."""

    skills: frozenset[str]
    parts: Mapping[str, str]


# --- building and validating ------------------------------------------------------------------


def parse(document: _Table) -> Entries:
    """Validate a parsed knowledge base document and resolve its J1939 entries.

    Args:
        document: The TOML document, as `tomllib` parsed it.

    Returns:
        Its entries.

    Raises:
        KnowledgeBaseError: The document fails validation (its `source` is the default).
    """
    _check_keys(document, _TOP_KEYS, "", required=_REQUIRED_KEYS)
    skills = _string_map(document["skills"], "skills")
    vocabulary = _Vocabulary(frozenset(skills), _string_map(document["parts"], "parts"))
    fmi_texts = _fmi_texts(document["fmi"])
    faults = _faults(document["fault"], vocabulary)
    shared_table = _table(document["shared"], "shared")
    targets = {f"fault.{code}": content for code, (_, content) in faults.items()}
    for name, value in shared_table.items():
        key = f"shared.{name}"
        table = _table(value, key)
        _check_keys(table, _SHARED_KEYS, key, required=_SHARED_KEYS)
        targets[key] = _content(table, key, vocabulary)
    j1939 = _table(document["j1939"], "j1939")
    _check_keys(j1939, frozenset({"generic", "spn"}), "j1939", required=frozenset({"generic"}))
    generic_table = _table(j1939["generic"], "j1939.generic")
    _check_keys(generic_table, _SHARED_KEYS, "j1939.generic", required=_SHARED_KEYS)
    generic = _content(generic_table, "j1939.generic", vocabulary)
    resolver = _Resolver(targets, vocabulary, Resolved(generic, generic.severity))
    spns = {
        _code_key(raw, DTC_SPN_MAX, f"j1939.spn.{raw}"): resolver.spn(value, f"j1939.spn.{raw}")
        for raw, value in _table(j1939.get("spn", {}), "j1939.spn").items()
    }
    relations = _relations(document.get("relation", {}), faults)
    return Entries(faults, spns, generic, fmi_texts, skills, relations)


def _relations(value: object, faults: Mapping[str, object]) -> dict[tuple[str, str], str]:
    """`[relation]`: `"<signal> low|high" = "<fault code>"`, each naming a known fault."""
    out: dict[tuple[str, str], str] = {}
    for raw, target in _table(value, "relation").items():
        key = f"relation.{raw}"
        signal, _, side = raw.partition(" ")
        if signal not in SIGNAL_NAMES or side not in _RELATION_SIDES:
            raise KnowledgeBaseError(key, "expected '<signal> low' or '<signal> high'")
        fault = _text(target, key)
        if fault not in faults:
            raise KnowledgeBaseError(key, f"unknown fault {fault!r}")
        out[signal, side] = fault
    return out


def _faults(value: object, vocabulary: _Vocabulary) -> dict[str, tuple[str, Content]]:
    table = _table(value, "fault")
    for code in table:
        if code not in KNOWN_FAULTS:
            raise KnowledgeBaseError(
                f"fault.{code}",
                f"not a fault code of the engine (known: {', '.join(KNOWN_FAULTS)})",
            )
    faults: dict[str, tuple[str, Content]] = {}
    for code in KNOWN_FAULTS:  # the engine's order, whatever the file's
        key = f"fault.{code}"
        if code not in table:
            raise KnowledgeBaseError(key, "missing: every fault code of the engine needs an entry")
        entry = _table(table[code], key)
        _check_keys(entry, _FAULT_KEYS, key, required=_FAULT_KEYS)
        faults[code] = (_text(entry["title"], f"{key}.title"), _content(entry, key, vocabulary))
    return faults


class _Resolver:
    """Resolves J1939 entries against the fault and shared content, inheriting as documented."""

    def __init__(
        self, targets: Mapping[str, Content], vocabulary: _Vocabulary, generic: Resolved
    ) -> None:
        self._targets = targets
        self._vocabulary = vocabulary
        self._generic = generic

    def spn(self, value: object, key: str) -> Spn:
        table = _table(value, key)
        _check_keys(table, _SPN_ENTRY_KEYS, key, required=frozenset({"name"}))
        otherwise = self._entry(table, key, self._generic)
        by_fmi = {
            _code_key(raw, DTC_FMI_MAX, f"{key}.fmi.{raw}"): self._fmi(
                fmi_value, key, raw, otherwise
            )
            for raw, fmi_value in _table(table.get("fmi", {}), f"{key}.fmi").items()
        }
        return Spn(_text(table["name"], f"{key}.name"), by_fmi, otherwise)

    def _fmi(self, value: object, spn_key: str, raw: str, otherwise: Resolved) -> Resolved:
        key = f"{spn_key}.fmi.{raw}"
        table = _table(value, key)
        _check_keys(table, _FMI_ENTRY_KEYS, key)
        return self._entry(table, key, otherwise)

    def _entry(self, table: _Table, key: str, fallback: Resolved) -> Resolved:
        """One entry's content: `see`, its own, or the fallback's; then its severity override."""
        own = _CONTENT_KEYS & table.keys()
        override = _severity(table["severity"], f"{key}.severity") if "severity" in table else None
        if "see" in table:
            if own:
                raise KnowledgeBaseError(
                    key, f"has `see` and its own content ({', '.join(sorted(own))}); choose one"
                )
            content = self._see(table["see"], f"{key}.see")
        elif own:
            missing = _SHARED_KEYS - table.keys()
            if missing:
                raise KnowledgeBaseError(
                    key, f"own content needs all of its keys; missing {', '.join(sorted(missing))}"
                )
            content = _content(table, key, self._vocabulary)
        else:
            content = fallback.content
            override = override or fallback.severity
        return Resolved(content, override or content.severity)

    def _see(self, value: object, key: str) -> Content:
        target = _text(value, key)
        content = self._targets.get(target)
        if content is None:
            namespaces = " or ".join(f"`{ns}.<name>`" for ns in _SEE_NAMESPACES)
            raise KnowledgeBaseError(
                key, f"refers to {target!r}, which does not exist (expected {namespaces})"
            )
        return content


def _content(table: _Table, key: str, vocabulary: _Vocabulary) -> Content:
    causes = _causes(table["causes"], f"{key}.causes")
    return Content(
        severity=_severity(table["severity"], f"{key}.severity"),
        summary=_text(table["summary"], f"{key}.summary"),
        # Ranked here so editors may list causes in any order; stable for equal likelihoods.
        causes=tuple(sorted(causes, key=lambda cause: -cause.likelihood)),
        remote_steps=tuple(
            _text(step, f"{key}.remote_steps[{i}]")
            for i, step in enumerate(_list(table["remote_steps"], f"{key}.remote_steps", 1))
        ),
        remote_fixable=_bool(table["remote_fixable"], f"{key}.remote_fixable"),
        parts=tuple(
            _part(part, f"{key}.parts[{i}]", vocabulary.parts)
            for i, part in enumerate(_list(table["parts"], f"{key}.parts", 0))
        ),
        skills=_names(table["skills"], f"{key}.skills", vocabulary.skills, "skill", 1),
        signals=_names(table["signals"], f"{key}.signals", frozenset(SIGNAL_NAMES), "signal", 0),
    )


def _causes(value: object, key: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, item in enumerate(_list(value, key, 1)):
        item_key = f"{key}[{i}]"
        table = _table(item, item_key)
        required = frozenset({"text", "likelihood"})
        _check_keys(table, required, item_key, required=required)
        likelihood = _number(table["likelihood"], f"{item_key}.likelihood")
        if not 0.0 <= likelihood <= 1.0:
            raise KnowledgeBaseError(f"{item_key}.likelihood", f"{likelihood} is not in [0, 1]")
        causes.append(Cause(_text(table["text"], f"{item_key}.text"), likelihood))
    total = math.fsum(cause.likelihood for cause in causes)
    if abs(total - 1.0) > LIKELIHOOD_SUM_TOLERANCE:
        raise KnowledgeBaseError(key, f"likelihoods sum to {total:.3f}, not about 1")
    return causes


def _part(value: object, key: str, catalogue: Mapping[str, str]) -> Part:
    table = _table(value, key)
    required = frozenset({"part_no", "quantity"})
    _check_keys(table, required, key, required=required)
    part_no = _text(table["part_no"], f"{key}.part_no")
    if part_no not in catalogue:
        raise KnowledgeBaseError(f"{key}.part_no", f"{part_no!r} is not in [parts]")
    quantity = table["quantity"]
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise KnowledgeBaseError(f"{key}.quantity", f"{quantity!r} is not a positive integer")
    return Part(part_no, catalogue[part_no], quantity)


def _names(
    value: object, key: str, allowed: frozenset[str], what: str, min_items: int
) -> tuple[str, ...]:
    names: list[str] = []
    for i, item in enumerate(_list(value, key, min_items)):
        name = _text(item, f"{key}[{i}]")
        if name not in allowed:
            raise KnowledgeBaseError(
                f"{key}[{i}]", f"unknown {what} {name!r} (known: {', '.join(sorted(allowed))})"
            )
        if name in names:
            raise KnowledgeBaseError(f"{key}[{i}]", f"{what} {name!r} listed twice")
        names.append(name)
    return tuple(names)


def _fmi_texts(value: object) -> dict[int, str]:
    texts = {
        _code_key(raw, DTC_FMI_MAX, f"fmi.{raw}"): _text(text, f"fmi.{raw}")
        for raw, text in _table(value, "fmi").items()
    }
    for fmi in range(DTC_FMI_MAX + 1):
        if fmi not in texts:
            raise KnowledgeBaseError(f"fmi.{fmi}", "missing: every FMI 0..31 needs a description")
    return texts


# --- narrowing parsed TOML --------------------------------------------------------------------


def _check_keys(
    table: _Table, allowed: frozenset[str], key: str, required: frozenset[str] = frozenset()
) -> None:
    prefix = f"{key}." if key else ""
    for name in table:
        if name not in allowed:
            raise KnowledgeBaseError(
                f"{prefix}{name}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )
    for name in sorted(required):
        if name not in table:
            raise KnowledgeBaseError(f"{prefix}{name}", "missing")


def _table(value: object, key: str) -> _Table:
    if not isinstance(value, dict):
        raise KnowledgeBaseError(key, f"expected a table, got {type(value).__name__}")
    return value


def _list(value: object, key: str, min_items: int) -> list[object]:
    if not isinstance(value, list):
        raise KnowledgeBaseError(key, f"expected an array, got {type(value).__name__}")
    if len(value) < min_items:
        raise KnowledgeBaseError(key, f"needs at least {min_items} item(s)")
    return value


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise KnowledgeBaseError(key, "expected a non-empty string")
    return value.strip()


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise KnowledgeBaseError(key, f"expected a number, got {type(value).__name__}")
    return float(value)


def _bool(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise KnowledgeBaseError(key, f"expected true or false, got {type(value).__name__}")
    return value


def _severity(value: object, key: str) -> Severity:
    text = _text(value, key)
    try:
        return Severity(text)
    except ValueError:
        known = ", ".join(s.value for s in Severity)
        raise KnowledgeBaseError(key, f"unknown severity {text!r} (known: {known})") from None


def _string_map(value: object, key: str) -> dict[str, str]:
    table = _table(value, key)
    if not table:
        raise KnowledgeBaseError(key, "needs at least one entry")
    return {name: _text(text, f"{key}.{name}") for name, text in table.items()}


def _code_key(raw: str, maximum: int, key: str) -> int:
    """A J1939 number used as a table key (`100`, `1`), within its field's range."""
    if not raw.isdigit() or int(raw) > maximum:
        raise KnowledgeBaseError(key, f"expected a number 0..{maximum} as key")
    return int(raw)
