"""What the alarm page diagnoses a detected fault as: the fault its first alarm maps to.

An `unexplained_anomaly` alarm whose detail names a broken relation that the knowledge base maps
(`[relation]`: `oil_pressure_kpa low` goes to `low_oil_pressure`) is diagnosed as that fault, with
its causes, steps, parts and skills (`KnowledgeBase.diagnose_alarm`); the others stay
unexplained. `bench.diagnosis_eval` prints, for each type of the anomaly kind, what its detected
faults were diagnosed as, so a run shows whether a relation-breaking fault reaches the expert as
the fault it is.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Protocol

from diagnosis.knowledge import KnowledgeBase


class Detected(Protocol):
    """A scored fault: its type label, and the detail of its first matching alarm if any."""

    @property
    def type(self) -> str: ...
    @property
    def detected_ms(self) -> int | None: ...
    @property
    def detail(self) -> str: ...


def diagnosed_as(
    faults: Iterable[Detected], kind: str, knowledge: KnowledgeBase
) -> dict[str, Counter[str]]:
    """For each type of `kind` (`unexplained_anomaly/overcharging/sudden`), how many of its
    detected faults the alarm page diagnoses as each fault code."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for f in faults:
        if f.detected_ms is not None and f.type.split("/")[0] == kind:
            out[f.type][knowledge.diagnose_alarm(kind, f.detail).fault] += 1
    return dict(sorted(out.items()))


def print_diagnosed_as(faults: Iterable[Detected], kind: str) -> None:
    """Print `diagnosed_as` with the shipped knowledge base, one line a type."""
    found = diagnosed_as(faults, kind, KnowledgeBase.load())
    if not found:
        return
    print(f"\n{kind} detected, diagnosed on the alarm page as (first alarm; relation mapping):")
    for label, counts in found.items():
        told = ", ".join(f"{code} {n}" for code, n in counts.most_common())
        print(f"  {label.split('/', 1)[-1]:36s} {told}")
