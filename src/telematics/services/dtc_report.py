"""Reporting of the fault codes the engine opened no alarm for (`[dtc] max_open` held).

This module owns how such codes reach operators: every one counted in
`telematics_dtc_suppressed_total`, and the machines with the most named in a warning at most
once a minute, so that a gateway reporting garbage is seen without flooding the log. It never
decides which codes are suppressed (that is `diagnosis.dtc`'s) and does no I/O but logging.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Final

from telematics.base.metrics import Metrics

log = logging.getLogger(__name__)

LOG_EVERY_S: Final = 60.0
"""At most one warning a minute."""
_NAMED: Final = 5


class SuppressedCodes:
    """Counts suppressed fault-code reports and names the worst machines now and then."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._since_report: Counter[str] = Counter()
        self._reported_at = -LOG_EVERY_S

    def add(self, per_machine: Mapping[str, int]) -> None:
        """Count a batch's suppressed reports, per machine; warn if a minute has passed."""
        if per_machine:
            self._metrics.dtc_suppressed.inc(sum(per_machine.values()))
            self._since_report.update(per_machine)
        now = time.monotonic()
        if not self._since_report or now - self._reported_at < LOG_EVERY_S:
            return
        held = self._since_report
        more = len(held) - _NAMED
        log.warning(
            "fault codes beyond the open-episode bound since the last report, kept in the"
            " readings but not raised: %s%s",
            ", ".join(f"{machine} {count}" for machine, count in held.most_common(_NAMED)),
            f" and {more} more machines" if more > 0 else "",
        )
        self._since_report, self._reported_at = Counter(), now
