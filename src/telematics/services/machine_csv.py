"""Machines from CSV, for registering a fleet of hundreds of thousands at once.

Pure: text in, checked records (or every problem, each with its line number and field) out. An
import is all or nothing: the whole file is checked before anything is written, and the caller
writes it in one transaction (`store.machine_import`). The header names the columns; `machine_id`,
`model` and `customer_id` are required, the others (`machine_class`, `oem`, `serial_number`,
`fuel_tank_l`, `delivered_at`, `name`, `site_lat`, `site_lon`, `site_radius_m`) may be left
out or left empty. Cells are trimmed of surrounding spaces; inside, the same rules hold as for
`POST /v1/machines` (`store.machine_fields`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from telematics.services.csvimport import CsvImportError
from telematics.store import machine_fields as fields
from telematics.store.registry import RECORD_COLUMNS, MachineRecord, Site

T = TypeVar("T")

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")  # api.schemas.ID_PATTERN
REQUIRED = ("machine_id", "model", "customer_id")
COLUMNS = (*RECORD_COLUMNS,)
DEFAULT_RADIUS_M = 500.0


class _FieldError(Exception):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")


@dataclass(frozen=True, slots=True)
class MachineFile:
    """A checked file: its records and the columns its header named."""

    records: list[MachineRecord]
    columns: frozenset[str]


class _Row:
    """One CSV record, read field by field; every bad field is remembered, not only the first."""

    def __init__(self, cells: Mapping[str, str | None]) -> None:
        self._cells = cells
        self.problems: list[str] = []

    def _raw(self, name: str) -> str:
        value = self._cells.get(name)
        return value.strip() if isinstance(value, str) else ""

    def _get(self, name: str, parse: Callable[[str], T], required: bool = False) -> T | None:
        raw = self._raw(name)
        if not raw:
            if required:
                self.problems.append(f"{name}: is required")
            return None
        try:
            return parse(raw)
        except _FieldError as exc:
            self.problems.append(str(exc))
            return None

    def ident(self, name: str) -> str | None:
        def parse(raw: str) -> str:
            if not _ID.fullmatch(raw):
                raise _FieldError(name, f"{raw!r} is not a valid id")
            return raw

        return self._get(name, parse, required=True)

    def checked(
        self, name: str, problem: Callable[[str], str | None], required: bool = False
    ) -> str | None:
        def parse(raw: str) -> str:
            found = problem(raw)
            if found:
                raise _FieldError(name, f"{raw!r} {found}")
            return raw

        return self._get(name, parse, required)

    def number(self, name: str, problem: Callable[[float], str | None]) -> float | None:
        def parse(raw: str) -> float:
            try:
                value = float(raw)
            except ValueError:
                raise _FieldError(name, f"{raw!r} is not a number") from None
            found = problem(value) if math.isfinite(value) else "must be a finite number"
            if found:
                raise _FieldError(name, f"{raw} {found}")
            return value

        return self._get(name, parse)

    def day(self, name: str) -> date | None:
        def parse(raw: str) -> date:
            try:
                value = date.fromisoformat(raw)
            except ValueError:
                raise _FieldError(name, f"{raw!r} is not a date like 2024-03-18") from None
            found = fields.delivered_problem(value)
            if found:
                raise _FieldError(name, f"{raw} {found}")
            return value

        return self._get(name, parse)


def _bounded(lo: float, hi: float) -> Callable[[float], str | None]:
    return lambda v: None if lo <= v <= hi else f"is not within {lo:g}..{hi:g}"


def _site(row: _Row) -> Site | None:
    lat = row.number("site_lat", _bounded(-90, 90))
    lon = row.number("site_lon", _bounded(-180, 180))
    radius = row.number(
        "site_radius_m", lambda v: None if 0 < v <= 100_000 else "is not within 0..100000"
    )
    if (lat is None) != (lon is None):
        row.problems.append("site_lat, site_lon: go together")
        return None
    if lat is None or lon is None:
        return None
    return Site(lat, lon, radius or DEFAULT_RADIUS_M)


def _record(cells: Mapping[str, str | None]) -> tuple[MachineRecord | None, list[str]]:
    row = _Row(cells)
    machine_id = row.ident("machine_id")
    model = row.checked("model", fields.designation_problem, required=True)
    machine_class = row.checked(
        "machine_class",
        lambda v: (
            None
            if v in fields.MACHINE_CLASSES
            else f"is not one of {', '.join(fields.MACHINE_CLASSES)}"
        ),
    )
    customer_id = row.ident("customer_id")
    oem = row.checked("oem", lambda v: fields.text_problem(v, fields.OEM_MAX))
    serial = row.checked("serial_number", fields.designation_problem)
    tank = row.number("fuel_tank_l", fields.fuel_tank_problem)
    delivered = row.day("delivered_at")
    name = row.checked("name", lambda v: fields.text_problem(v, fields.NAME_MAX))
    site = _site(row)
    if row.problems or machine_id is None or model is None or customer_id is None:
        return None, row.problems
    record = MachineRecord(
        machine_id=machine_id,
        model=model,
        customer_id=customer_id,
        site=site,
        machine_class=machine_class,
        oem=oem,
        serial_number=serial,
        fuel_tank_l=tank,
        delivered_at=delivered,
        name=name,
    )
    return record, []


def _header(reader: csv.DictReader[str]) -> list[str]:
    header = [h.strip() for h in reader.fieldnames or ()]
    problems = []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        problems.append(f"header: missing column(s) {', '.join(missing)}")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        problems.append(f"header: unknown column(s) {', '.join(unknown)}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        problems.append(f"header: repeated column(s) {', '.join(repeated)}")
    if problems:
        raise CsvImportError(problems)
    return header


def parse_machines(text: str) -> MachineFile:
    """Check a CSV of machines.

    Raises:
        CsvImportError: Any problem; `errors` lists every one, `line N: field: problem`.
    """
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    reader.fieldnames = _header(reader)
    records: list[MachineRecord] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if None in cells:
                errors.append(f"line {line}: more cells than the header has columns")
                continue
            record, problems = _record(cells)
            errors += [f"line {line}: {p}" for p in problems]
            if record is None:
                continue
            seen = first_line.setdefault(record.machine_id, line)
            if seen != line:
                errors.append(
                    f"line {line}: machine_id: {record.machine_id!r} is a duplicate of line {seen}"
                )
            records.append(record)
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: not CSV: {exc}")
    if errors:
        raise CsvImportError(errors)
    if not records:
        raise CsvImportError(["the file has no rows"])
    return MachineFile(records, frozenset(reader.fieldnames))
