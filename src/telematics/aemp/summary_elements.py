"""The data elements that come from work summaries: `CumulativeIdleHours`, `FuelUsed`
(litres), `FuelUsedLast24` and `Distance`.

They are computed by the work-summary rollup (package `summaries`), not from raw readings here:
until that rollup is wired in, `work_summary_elements` answers that none is available, so the
snapshot leaves them out and their series answer 404 "not available". This is the one place to
wire them (docs/aemp.md, "Not yet served").
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from telematics.aemp.elements import Element, Series

SUMMARY_SERIES = frozenset(
    {Series.IDLE_HOURS, Series.FUEL_USED, Series.FUEL_USED_LAST24, Series.DISTANCE}
)
"""The series that come from work summaries."""


async def work_summary_elements(
    conn: asyncpg.Connection, machine_ids: Sequence[str]
) -> dict[str, list[Element]]:
    """The summary elements of each machine's snapshot, by machine id: none available yet."""
    del conn, machine_ids
    return {}
