"""The shipped maintenance plans: packaged TOML (`plans.toml`), checked as the API checks plans.

Reads the packaged file, or one given by path (tests), once. A plan the API would refuse fails
here, with the key named, so a broken file stops the start rather than a machine's view.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from telematics.maintenance.book import PlanKey, scope_of
from telematics.maintenance.plan import PlanItem
from telematics.maintenance.schemas import PlanIn


class ShippedPlanError(ValueError):
    """The shipped plans file is broken: which plan, and why."""


def parse(text: str) -> dict[PlanKey, tuple[PlanItem, ...]]:
    """Plans from the TOML text.

    Raises:
        ShippedPlanError: Not TOML, an unknown section, a class section naming a model (or the
            other way round), or a plan the API would refuse.
    """
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ShippedPlanError(f"plans: not TOML: {exc}") from exc
    plans: dict[PlanKey, tuple[PlanItem, ...]] = {}
    for section, table in data.items():
        if section not in ("class", "model") or not isinstance(table, dict):
            raise ShippedPlanError(f"plans: unknown section {section!r}")
        for key, items in table.items():
            if scope_of(key) != section:
                raise ShippedPlanError(f"plans: {section}.{key} is a {scope_of(key)}")
            try:
                plans[(section, key)] = PlanIn.model_validate(
                    {"items": items}, strict=False
                ).value()
            except ValidationError as exc:
                raise ShippedPlanError(f"plans: {section}.{key}: {exc}") from exc
    return plans


def load(path: Path | None = None) -> dict[PlanKey, tuple[PlanItem, ...]]:
    """The packaged plans, or those of the TOML file at `path`."""
    if path is not None:
        return parse(path.read_text(encoding="utf-8"))
    packaged = resources.files("telematics.maintenance").joinpath("plans.toml")
    return parse(packaged.read_text(encoding="utf-8"))
