"""A machine's usage rate in engine hours per calendar day, robust to idle weeks and gaps.

Input: the engine-hours counter's last value on each UTC day that has a reading carrying it.

1. Daily usage. Between two consecutive observed days `a < b` the counter rose by
   `delta = last(b) - last(a)` over `g = b - a` calendar days; each day of `(a, b]` is given
   `delta / g` hours. A gap with no readings (the machine offline, the counter still counting)
   is thereby bridged: its increase is spread over its calendar days. A counter that runs
   backwards (`delta < 0`: a replaced controller) is not usage, nor is an increase of more than
   24 h a day (a glitch): those days are unknown, not zero.
2. Weekly rates. The `weeks` whole weeks before `today` (today itself is still running, so it is
   left out) are blocks of 7 days ending yesterday; a block counts only when every one of its
   days is known (bridged gap days are known; the days after the newest reading are not, nor
   those before the oldest), and its rate is its sum / 7. Idle days count as zero, so a machine
   that works five days a week at 8 h has a weekly rate of 40 / 7 = 5.71 h/day. (A block with
   unknown days would be biased by which days they are: an unknown weekend overstates it.)
3. The rate is the median of the weekly rates: one idle week (a holiday) or one busy week moves
   it little. With no complete week (a machine new to telematics), the mean of the known days
   of the window, when there are at least `min_known_days`; else None.

Pure: no I/O library.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

MAX_H_PER_DAY = 24.0


@dataclass(frozen=True, slots=True)
class DayCounter:
    """The counter's last value on one UTC day."""

    day: date
    engine_hours: float


def daily_usage(days: Sequence[DayCounter]) -> dict[date, float]:
    """Hours used on each calendar day the counter tells about (step 1 of the module docstring)."""
    ordered = sorted(days, key=lambda d: d.day)
    usage: dict[date, float] = {}
    for a, b in itertools.pairwise(ordered):
        gap = (b.day - a.day).days
        delta = b.engine_hours - a.engine_hours
        if gap <= 0 or delta < 0 or delta > MAX_H_PER_DAY * gap:
            continue
        for k in range(1, gap + 1):
            usage[a.day + timedelta(days=k)] = delta / gap
    return usage


def usage_rate(
    days: Sequence[DayCounter], *, today: date, weeks: int = 4, min_known_days: int = 3
) -> float | None:
    """Engine hours per calendar day over the last `weeks` weeks (module docstring), or None."""
    usage = daily_usage(days)
    rates: list[float] = []
    known: list[float] = []
    for w in range(weeks):
        end = today - timedelta(days=7 * w + 1)
        block = [usage[d] for k in range(7) if (d := end - timedelta(days=k)) in usage]
        known += block
        if len(block) == 7:
            rates.append(sum(block) / 7)
    if rates:
        return statistics.median(rates)
    return sum(known) / len(known) if len(known) >= min_known_days else None
