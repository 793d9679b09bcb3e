"""The knowledge base: what a fault means, its probable causes, remote-fix steps, parts and skills.

This module owns loading and querying `data/knowledge.toml` (shipped as package data; an operator
may load an edited copy by path). It turns a fault code, a rule's (`low_oil_pressure`) or a J1939
one (`dtc_100_1`), into a `Diagnosis`: a frozen value the store, the API and dispatch (parts,
skills) use as is.

It must never decide whether a machine is faulty (the engine does), never touch the network, a
database or the clock, and never read any file but the one knowledge base at load. Standard
library only, plus `diagnosis.errors`, `diagnosis.events`, `diagnosis.signals` and
`diagnosis.knowledge_parse`.

Everything is checked once, at load, so that `diagnose` cannot fail on a loaded base:
`diagnosis.knowledge_parse` validates the file and resolves every J1939 entry, and a broken file
raises `KnowledgeBaseError` with the dotted key path of what is wrong
(`fault.low_oil_pressure.severity`, `j1939.spn.100.fmi.1.see`,
`fault.engine_overheat.causes[2].likelihood`). That error, `Cause`, `Part`, `KNOWN_FAULTS` and
`LIKELIHOOD_SUM_TOLERANCE` are defined there and re-exported here, so callers import the
knowledge base from this one module.

J1939 lookup of `dtc_<spn>_<fmi>`: the SPN+FMI entry, else the SPN entry, else the generic entry.
Each of those either points (`see`) at a fault or shared entry, has its own content, or is empty
and defers to the next; a `severity` on the way overrides the content's. The title is always
"<parameter name>: <J1939-73 FMI text>", because the same causes read differently per FMI.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Final

from diagnosis.errors import DiagnosisError
from diagnosis.events import UNEXPLAINED_ANOMALY, Severity, parse_dtc_code
from diagnosis.knowledge_parse import (
    KNOWN_FAULTS,
    LIKELIHOOD_SUM_TOLERANCE,
    Cause,
    Content,
    KnowledgeBaseError,
    Part,
    Resolved,
    Spn,
    parse,
)
from diagnosis.signals import SIGNALS

__all__ = [
    "KNOWN_FAULTS",
    "LIKELIHOOD_SUM_TOLERANCE",
    "Cause",
    "Diagnosis",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "Part",
    "UnknownFaultError",
]

_PACKAGED: Final = "knowledge.toml"
# The signal of each SPN the catalogue measures, shown first for a J1939 code on that SPN.
_SIGNAL_BY_SPN: Final = {s.spn: s.name for s in SIGNALS}
# What `diagnosis.anomaly` writes into an anomaly's detail when a relation broke.
_RELATION_IN_DETAIL: Final = re.compile(
    r"relation broken: (?P<relation>(?P<signal>[a-z0-9_]+) (?P<side>low|high) for [^;(]*?)\s*\("
)


class UnknownFaultError(DiagnosisError, LookupError):
    """`diagnose` was asked about a fault code that is neither known nor a J1939 code.

    Attributes:
        fault: The code asked about.
    """

    def __init__(self, fault: str) -> None:
        super().__init__(f"no knowledge base entry for fault code {fault!r}")
        self.fault = fault


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The preliminary diagnosis of one fault code.

    Attributes:
        fault: The fault code asked about (`low_oil_pressure`, `dtc_100_1`).
        title: Short human title; for J1939 codes "<parameter>: <FMI text>".
        severity: How urgently a person is needed.
        summary: One paragraph: what the fault means and what usually lies behind it.
        causes: Probable causes, most likely first.
        remote_steps: Steps an expert walks the operator through by phone, in order.
        remote_fixable: Whether the fault is usually settled by phone, without a visit.
        parts: Parts a visit may need.
        skills: Skills a visit needs (from the base's skill vocabulary).
        signals: Signals worth showing around the alarm, most relevant first.
        spn: J1939 SPN for J1939 codes, else None.
        fmi: J1939 FMI for J1939 codes, else None.
    """

    fault: str
    title: str
    severity: Severity
    summary: str
    causes: tuple[Cause, ...]
    remote_steps: tuple[str, ...]
    remote_fixable: bool
    parts: tuple[Part, ...]
    skills: tuple[str, ...]
    signals: tuple[str, ...]
    spn: int | None = None
    fmi: int | None = None


class KnowledgeBase:
    """A loaded, validated knowledge base. Immutable after load; safe to share."""

    __slots__ = ("_faults", "_fmi_texts", "_generic", "_relations", "_skills", "_spns")

    def __init__(
        self,
        faults: Mapping[str, tuple[str, Content]],
        spns: Mapping[int, Spn],
        generic: Content,
        fmi_texts: Mapping[int, str],
        skills: Mapping[str, str],
        relations: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        """Use `load` or `loads`; this constructor takes already validated parts."""
        self._relations = dict(relations or {})
        self._faults = dict(faults)
        self._spns = dict(spns)
        self._generic = generic
        self._fmi_texts = dict(fmi_texts)
        self._skills = dict(skills)

    @classmethod
    def load(cls, path: Path | None = None) -> KnowledgeBase:
        """Load and validate a knowledge base file.

        Args:
            path: A TOML file in the packaged layout (an operator's edited copy), or None for
                the packaged `diagnosis/data/knowledge.toml`.

        Returns:
            The knowledge base.

        Raises:
            KnowledgeBaseError: The file cannot be read, is not TOML, or fails validation.
        """
        if path is None:
            source = "<packaged>"
            resource = resources.files("diagnosis") / "data" / _PACKAGED
            text = resource.read_text(encoding="utf-8")
        else:
            source = str(path)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise KnowledgeBaseError("", f"cannot read: {exc}", source) from exc
        return cls.loads(text, source)

    @classmethod
    def loads(cls, text: str, source: str = "<string>") -> KnowledgeBase:
        """Parse and validate a knowledge base from TOML text.

        Args:
            text: The TOML document.
            source: Where it came from, for error messages.

        Returns:
            The knowledge base.

        Raises:
            KnowledgeBaseError: The text is not TOML or fails validation.
        """
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise KnowledgeBaseError("", f"not valid TOML: {exc}", source) from exc
        try:
            entries = parse(document)
        except KnowledgeBaseError as exc:
            raise KnowledgeBaseError(exc.key, exc.reason, source) from None
        return cls(
            entries.faults,
            entries.spns,
            entries.generic,
            entries.fmi_texts,
            entries.skills,
            entries.relations,
        )

    @property
    def faults(self) -> tuple[str, ...]:
        """Fault codes with an entry (rule faults and the model's), in the engine's order."""
        return tuple(self._faults)

    @property
    def spns(self) -> tuple[int, ...]:
        """J1939 SPNs with an entry, ascending."""
        return tuple(sorted(self._spns))

    @property
    def skills(self) -> Mapping[str, str]:
        """The skill vocabulary: skill -> description."""
        return dict(self._skills)

    def fmi_description(self, fmi: int) -> str:
        """The J1939-73 meaning of an FMI, e.g. "Data erratic, intermittent or incorrect"."""
        return self._fmi_texts.get(fmi, f"FMI {fmi} (not defined by J1939-73)")

    def diagnose(self, fault: str) -> Diagnosis:
        """The preliminary diagnosis of a fault code.

        Args:
            fault: A fault code of the engine (`low_oil_pressure`) or a J1939 code (`dtc_100_1`).

        Returns:
            The diagnosis. Any J1939 code gets one: its own, its SPN's or the generic entry.

        Raises:
            UnknownFaultError: `fault` is neither a known fault code nor a J1939 code.
        """
        dtc = parse_dtc_code(fault)
        if dtc is not None:
            return self._diagnose_dtc(fault, *dtc)
        entry = self._faults.get(fault)
        if entry is None:
            raise UnknownFaultError(fault)
        title, content = entry
        return _diagnosis(fault, title, content.severity, content, content.signals)

    def relation_fault(self, signal: str, side: str) -> str | None:
        """The fault a broken relation points to (`[relation]`), or None: still unexplained.

        Args:
            signal: The signal whose relation broke (`oil_pressure_kpa`).
            side: `"low"` or `"high"`: below or above what its relations say.
        """
        return self._relations.get((signal, side))

    def diagnose_alarm(self, fault: str, detail: str) -> Diagnosis:
        """The diagnosis of an alarm: its fault's, or, for an `unexplained_anomaly` whose detail
        names a broken relation the knowledge base maps (`relation broken: oil_pressure_kpa low
        for engine_speed_rpm (-9.1)`), the mapped fault's, titled with the relation.

        Raises:
            UnknownFaultError: As `diagnose`.
        """
        found = _RELATION_IN_DETAIL.search(detail) if fault == UNEXPLAINED_ANOMALY else None
        target = None if found is None else self.relation_fault(found["signal"], found["side"])
        if found is None or target is None:
            return self.diagnose(fault)
        mapped = self.diagnose(target)
        relation = found["relation"]
        return replace(
            mapped,
            title=f"{mapped.title}: {relation}",
            summary=f"The anomaly model found {relation}. {mapped.summary}",
        )

    def _diagnose_dtc(self, fault: str, spn: int, fmi: int) -> Diagnosis:
        entry = self._spns.get(spn)
        if entry is None:
            name = f"J1939 SPN {spn}"
            resolved = Resolved(self._generic, self._generic.severity)
        else:
            name = entry.name
            resolved = entry.by_fmi.get(fmi, entry.otherwise)
        fmi_text = self.fmi_description(fmi)
        title = f"{name}: {fmi_text[:1].lower()}{fmi_text[1:]}"
        content = resolved.content
        own_signal = _SIGNAL_BY_SPN.get(spn)
        signals = content.signals
        if own_signal is not None:
            signals = (own_signal, *(s for s in signals if s != own_signal))
        return _diagnosis(fault, title, resolved.severity, content, signals, spn, fmi)


def _diagnosis(
    fault: str,
    title: str,
    severity: Severity,
    content: Content,
    signals: tuple[str, ...],
    spn: int | None = None,
    fmi: int | None = None,
) -> Diagnosis:
    return Diagnosis(
        fault=fault,
        title=title,
        severity=severity,
        summary=content.summary,
        causes=content.causes,
        remote_steps=content.remote_steps,
        remote_fixable=content.remote_fixable,
        parts=content.parts,
        skills=content.skills,
        signals=signals,
        spn=spn,
        fmi=fmi,
    )
