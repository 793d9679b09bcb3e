"""Bulk import of field resources from CSV: engineers, warehouses, parts, stock.

Pure: text in, values (or every problem, with its line number) out. An import is all or nothing:
the whole file is checked before anything is written, and the caller writes it in one
transaction. Columns are named in the header; optional columns may be left out or empty.
Skills are separated by `;` within their cell.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Mapping
from datetime import time
from typing import TypeVar

from telematics.base.errors import InvalidRequestError
from telematics.store.resources import (
    EngineerProfile,
    LocationKind,
    Part,
    StockLine,
    Warehouse,
)

T = TypeVar("T")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_SKILL = re.compile(r"[a-z][a-z0-9_]{0,63}")
STATUSES = ("available", "busy", "off")


class CsvImportError(InvalidRequestError):
    """A file that cannot be imported; `errors` names every bad line and field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the file; nothing was imported")
        self.errors = errors


class _RowError(Exception):
    pass


def _text(row: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = (row.get(name) or "").strip()
    if not value:
        if default is None:
            raise _RowError(f"{name} is required")
        return default
    return value


def _ident(row: Mapping[str, str], name: str) -> str:
    value = _text(row, name)
    if not _ID.fullmatch(value):
        raise _RowError(f"{name} {value!r} is not a valid id")
    return value


def _float(row: Mapping[str, str], name: str, lo: float, hi: float) -> float | None:
    raw = (row.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _RowError(f"{name} {raw!r} is not a number") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _RowError(f"{name} {raw} is not within {lo}..{hi}")
    return value


def _int(row: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = (row.get(name) or "").strip()
    if not raw and default is not None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _RowError(f"{name} {raw!r} is not a whole number") from None
    if value < 0:
        raise _RowError(f"{name} must not be negative")
    return value


def _time(row: Mapping[str, str], name: str) -> time | None:
    raw = (row.get(name) or "").strip()
    if not raw:
        return None
    try:
        return time.fromisoformat(raw)
    except ValueError:
        raise _RowError(f"{name} {raw!r} is not a time like 08:00") from None


def _parse(
    text: str, required: tuple[str, ...], build: Callable[[Mapping[str, str]], T]
) -> list[T]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or ()]
    missing = [c for c in required if c not in header]
    if missing:
        raise CsvImportError([f"header: missing column(s) {', '.join(missing)}"])
    reader.fieldnames = header
    out: list[T] = []
    errors: list[str] = []
    for row in reader:
        try:
            out.append(build(row))
        except _RowError as exc:
            errors.append(f"line {reader.line_num}: {exc}")
    if errors:
        raise CsvImportError(errors)
    if not out:
        raise CsvImportError(["the file has no rows"])
    return out


def _engineer(row: Mapping[str, str]) -> EngineerProfile:
    skills = tuple(s.strip() for s in (row.get("skills") or "").split(";") if s.strip())
    bad = [s for s in skills if not _SKILL.fullmatch(s)]
    if bad:
        raise _RowError(f"skills {bad} are not lower_case words")
    lat, lon = _float(row, "home_lat", -90, 90), _float(row, "home_lon", -180, 180)
    if (lat is None) != (lon is None):
        raise _RowError("home_lat and home_lon go together")
    status = _text(row, "status", "available")
    if status not in STATUSES:
        raise _RowError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return EngineerProfile(
        engineer_id=_ident(row, "engineer_id"),
        name=_text(row, "name"),
        skills=skills,
        home_lat=lat,
        home_lon=lon,
        shift_start=_time(row, "shift_start"),
        shift_end=_time(row, "shift_end"),
        shift_tz=_text(row, "shift_tz", "UTC"),
        status=status,
        max_orders=_int(row, "max_orders", 3),
        speed_kmh=_float(row, "speed_kmh", 1, 200) or 50.0,
    )


def parse_engineers(text: str) -> list[EngineerProfile]:
    """Engineers: engineer_id, name, [skills, home_lat, home_lon, shift_start, shift_end,
    shift_tz, status, max_orders, speed_kmh].
    """
    return _parse(text, ("engineer_id", "name"), _engineer)


def _warehouse(row: Mapping[str, str]) -> Warehouse:
    lat, lon = _float(row, "lat", -90, 90), _float(row, "lon", -180, 180)
    if lat is None or lon is None:
        raise _RowError("lat and lon are required")
    return Warehouse(_ident(row, "warehouse_id"), _text(row, "name"), lat, lon)


def parse_warehouses(text: str) -> list[Warehouse]:
    """Warehouses: warehouse_id, name, lat, lon."""
    return _parse(text, ("warehouse_id", "name", "lat", "lon"), _warehouse)


def parse_parts(text: str) -> list[Part]:
    """Parts: part_no, name."""
    return _parse(text, ("part_no", "name"), lambda r: Part(_ident(r, "part_no"), _text(r, "name")))


def _stock(row: Mapping[str, str]) -> StockLine:
    kind = _text(row, "location_kind")
    if kind not in ("van", "warehouse"):
        raise _RowError(f"location_kind {kind!r} is not van or warehouse")
    return StockLine(
        LocationKind(kind),
        _ident(row, "location_id"),
        _ident(row, "part_no"),
        _int(row, "quantity"),
        0,
    )


def parse_stock(text: str) -> list[StockLine]:
    """Stock on hand: location_kind (van or warehouse), location_id, part_no, quantity."""
    return _parse(text, ("location_kind", "location_id", "part_no", "quantity"), _stock)
