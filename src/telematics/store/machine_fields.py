"""What the machine registry holds in each field, checked the same way for JSON and for CSV.

This module owns the registry's field rules: the closed list of machine classes (the database's
`machines_class_known` constraint holds the same list), the model designation and serial number
patterns, and the bounds of the free-text and numeric fields. The HTTP schemas
(`api.schemas`) and the CSV import (`services.machine_csv`) both check with these, so a value one
of them accepts the other accepts too, and whatever either accepts the table can hold. Pure: no
SQL, no I/O.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final, Literal, get_args

MachineClass = Literal[
    "excavator",
    "pump_truck",
    "mixer_truck",
    "crane",
    "loader",
    "bulldozer",
    "grader",
    "roller",
    "piling_rig",
    "other",
]
"""Machine classes: each selects the rule book's `[class.<name>]` table, when it has one."""

MACHINE_CLASSES: Final[tuple[str, ...]] = get_args(MachineClass)

DESIGNATION_MAX: Final = 64
DESIGNATION_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]*( [A-Za-z0-9._-]+)*$"
"""A model designation or serial number as the manufacturer writes it (`SY215C`, `PC200-8`,
`320 GC`, `SY5419THB 56E`): ASCII letters, digits, `.`, `_` and `-`, in words separated by single
spaces, starting with a letter or digit; 1 to 64 characters. No `/`: designations appear in URL
paths (`/v1/models/{model}/train`)."""
_DESIGNATION: Final = re.compile(DESIGNATION_PATTERN)

OEM_MAX: Final = 64
NAME_MAX: Final = 200
FUEL_TANK_L_MAX: Final = 20_000.0
DELIVERED_FIRST: Final = date(1950, 1, 1)
DELIVERED_LAST: Final = date(2100, 12, 31)


def designation_problem(value: str) -> str | None:
    """Why `value` is not a model designation (or serial number), or None when it is."""
    if not 1 <= len(value) <= DESIGNATION_MAX:
        return f"must be 1 to {DESIGNATION_MAX} characters"
    if not _DESIGNATION.fullmatch(value):
        return (
            "must be letters, digits, '.', '_' and '-' in words separated by single spaces, "
            "starting with a letter or digit"
        )
    return None


def text_problem(value: str, max_len: int) -> str | None:
    """Why `value` is not acceptable free text (an OEM, a name), or None when it is.

    Printable (no control or format characters, no lone surrogates, no NUL), with no space at
    either end, 1 to `max_len` characters.
    """
    if not 1 <= len(value) <= max_len:
        return f"must be 1 to {max_len} characters"
    if not value.isprintable():
        return "must be printable text (no control or format characters)"
    if value != value.strip():
        return "must not start or end with a space"
    return None


def fuel_tank_problem(value: float) -> str | None:
    """Why `value` is not a fuel tank size in litres, or None when it is."""
    if not 0.0 < value <= FUEL_TANK_L_MAX:  # also refuses NaN
        return f"must be more than 0 and at most {FUEL_TANK_L_MAX:,.0f} litres"
    return None


def delivered_problem(value: date) -> str | None:
    """Why `value` is not a delivery date, or None when it is."""
    if not DELIVERED_FIRST <= value <= DELIVERED_LAST:
        return f"must be within {DELIVERED_FIRST.isoformat()}..{DELIVERED_LAST.isoformat()}"
    return None
