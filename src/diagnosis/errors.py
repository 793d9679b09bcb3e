"""The root of the diagnosis package's exceptions.

    DiagnosisError
    ├── RuleBookError        rules.toml: a bad threshold, named by its key path
    ├── KnowledgeBaseError   knowledge.toml: a bad entry, named by its key path
    ├── UnknownFaultError    a fault code the knowledge base does not know
    ├── EngineError          the engine was used wrongly (e.g. an unknown machine)
    └── ModelError           the anomaly model: too little data, a wrong shape, a foreign blob

A caller that only needs to know "diagnosis refused this" catches `DiagnosisError`; each subclass
carries the fields that explain it.
"""

from __future__ import annotations

from collections.abc import Sequence


class DiagnosisError(Exception):
    """Base of every error the diagnosis package raises on purpose."""


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


class EngineError(DiagnosisError):
    """Base of the engine's errors."""


class UnknownMachineError(EngineError):
    """A frame holds readings of machines the engine has no state for.

    Attributes:
        machine_ids: The unknown machines (restore them first).
    """

    def __init__(self, machine_ids: Sequence[str]) -> None:
        super().__init__(f"unknown machines: {', '.join(machine_ids[:5])}")
        self.machine_ids = tuple(machine_ids)
