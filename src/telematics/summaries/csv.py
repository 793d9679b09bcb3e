"""Summaries as CSV (`?format=csv`): one line per bucket, the same figures as the JSON.

Pure: no I/O. Refuels become a count and their litres; the operating map becomes 24 columns
`h00`..`h23` (working hours in each local hour).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

_FIGURES = (
    "engine_hours",
    "working_hours",
    "idle_hours",
    "fuel_used_l",
    "utilisation_pct",
    "distance_km",
    "first_start",
    "last_stop",
    "meter_anomalies",
    "coverage_pct",
)
HEADER = ("start", "end", *_FIGURES, "refuels", "refuel_l", *(f"h{h:02d}" for h in range(24)))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def buckets_csv(
    buckets: Sequence[dict[str, Any]], per_machine: Sequence[dict[str, Any]] = ()
) -> str:
    """The buckets as CSV text (header first); a fleet's per-machine table follows after a
    blank line, with its own header.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for b in buckets:
        litres = [r["litres"] for r in b["refuels"] if r["litres"] is not None]
        writer.writerow(
            [
                _cell(b["start"]),
                _cell(b["end"]),
                *(_cell(b[f]) for f in _FIGURES),
                len(b["refuels"]),
                round(sum(litres), 3) if litres else "",
                *(_cell(h) for h in b["hours_by_hour"]),
            ]
        )
    if per_machine:
        writer.writerow([])
        writer.writerow(("machine_id", *_FIGURES))
        for m in per_machine:
            writer.writerow([m["machine_id"], *(_cell(m[f]) for f in _FIGURES)])
    return out.getvalue()
