"""Ground truth: what each injected fault did, as the backend should have seen it.

This module owns `GroundTruth` (one record per fault; the criteria that define its times are
tabled in the package docstring, `simulators.faults`) and its file form, one JSON object a line
(`write_ground_truth`, `read_ground_truth`). The fault effects fill the records in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import orjson

from simulators.faults.spec import FaultForm, FaultKind, ParamValue, _json_int, _json_str


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What one injected fault did, as the backend should have seen it.

    Attributes:
        kind: Fault kind.
        fault: The backend fault code the fault stands for (`dtc_<spn>_<fmi>` for codes).
        faults: Every fault code the backend should raise for it (a sudden overheat climbs fast
            enough to be `coolant_rising_fast` as well).
        machine_id: The faulty machine.
        form: `sudden` or `gradual`.
        planned_start_ts_ms: Start of the planned window.
        planned_end_ts_ms: End of the planned window.
        start_ts_ms: First reading with the fault in effect; None if it never took effect.
        visible_ts_ms: First reading meeting `criterion`; None if none did.
        end_ts_ms: First reading after the effect was removed; None if the run ended first.
        criterion: The physical statement that defines `visible_ts_ms`.
        params: The fault's parameters, drawn ones included.
    """

    kind: FaultKind
    fault: str
    faults: tuple[str, ...]
    machine_id: str
    form: FaultForm
    planned_start_ts_ms: int
    planned_end_ts_ms: int
    start_ts_ms: int | None
    visible_ts_ms: int | None
    end_ts_ms: int | None
    criterion: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The record as a JSON object."""
        return {
            "kind": self.kind,
            "fault": self.fault,
            "faults": list(self.faults),
            "machine_id": self.machine_id,
            "form": self.form,
            "planned_start_ts_ms": self.planned_start_ts_ms,
            "planned_end_ts_ms": self.planned_end_ts_ms,
            "start_ts_ms": self.start_ts_ms,
            "visible_ts_ms": self.visible_ts_ms,
            "end_ts_ms": self.end_ts_ms,
            "criterion": self.criterion,
            "params": dict(self.params),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> GroundTruth:
        """A record from the object `to_json` wrote.

        Raises:
            ValueError: A key is missing or has the wrong type.
        """
        try:
            faults, params = doc["faults"], doc["params"]
            if not isinstance(faults, list) or not isinstance(params, dict):
                raise ValueError("faults must be a list and params an object")  # noqa: TRY004
            return cls(
                kind=cast("FaultKind", _json_str(doc, "kind")),
                fault=_json_str(doc, "fault"),
                faults=tuple(str(f) for f in faults),
                machine_id=_json_str(doc, "machine_id"),
                form=cast("FaultForm", _json_str(doc, "form")),
                planned_start_ts_ms=_json_int(doc, "planned_start_ts_ms"),
                planned_end_ts_ms=_json_int(doc, "planned_end_ts_ms"),
                start_ts_ms=_optional_int(doc, "start_ts_ms"),
                visible_ts_ms=_optional_int(doc, "visible_ts_ms"),
                end_ts_ms=_optional_int(doc, "end_ts_ms"),
                criterion=_json_str(doc, "criterion"),
                params=cast("dict[str, ParamValue]", params),
            )
        except KeyError as exc:
            raise ValueError(f"ground truth record without {exc.args[0]}") from exc


def _optional_int(doc: Mapping[str, object], key: str) -> int | None:
    return None if doc[key] is None else _json_int(doc, key)


def write_ground_truth(path: Path | str, records: Iterable[GroundTruth]) -> None:
    """Write records as JSON lines, one object per fault."""
    with Path(path).open("wb") as out:
        for record in records:
            out.write(orjson.dumps(record.to_json()) + b"\n")


def read_ground_truth(path: Path | str) -> tuple[GroundTruth, ...]:
    """Read the records `write_ground_truth` wrote.

    Raises:
        ValueError: A line is not a ground-truth record.
    """
    lines = Path(path).read_bytes().splitlines()
    return tuple(GroundTruth.from_json(orjson.loads(line)) for line in lines if line.strip())
