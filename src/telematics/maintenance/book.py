"""Which plan applies to a machine: stored plans over shipped ones, a model's over its class's.

For a machine of class C and model M: the class plan is the stored plan of C, else the shipped
plan of C, else (C has none) the stored, else the shipped, `default` plan. The model plan (the
stored plan of M, else the shipped one) overrides items of the class plan by id and adds its
others (`plan.with_override`). Class names are the registry's closed list plus `default`; any
other key names a model designation. Pure: no I/O library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from telematics.maintenance.plan import DEFAULT_PLAN, PlanItem, with_override
from telematics.store.machine_fields import MACHINE_CLASSES

Scope = Literal["class", "model"]
Source = Literal["stored", "shipped", "none"]
PlanKey = tuple[Scope, str]


def scope_of(key: str) -> Scope:
    """Whether a plan key names a class (the registry's classes and `default`) or a model."""
    return "class" if key in MACHINE_CLASSES or key == DEFAULT_PLAN else "model"


@dataclass(frozen=True, slots=True)
class PlanBook:
    """The shipped plans and the stored ones, by (scope, key)."""

    shipped: Mapping[PlanKey, tuple[PlanItem, ...]]
    stored: Mapping[PlanKey, tuple[PlanItem, ...]]

    def own(self, key: str) -> tuple[tuple[PlanItem, ...] | None, Source]:
        """The plan written for exactly this class or model: stored, else shipped, else none."""
        k: PlanKey = (scope_of(key), key)
        if k in self.stored:
            return self.stored[k], "stored"
        if k in self.shipped:
            return self.shipped[k], "shipped"
        return None, "none"

    def for_machine(self, machine_class: str, model: str) -> tuple[PlanItem, ...]:
        """The plan that applies to a machine of this class and model."""
        class_items, _ = self.own(machine_class)
        if class_items is None:
            class_items, _ = self.own(DEFAULT_PLAN)
        model_items = self.own(model)[0] if scope_of(model) == "model" else None
        return with_override(class_items or (), model_items)
