"""J1939 fault-code episodes: open, continue, flap, close.

This module owns the life of `dtc_<spn>_<fmi>` episodes. A code present in a reading opens an
episode (RAISED at that reading). A code absent from every reading of its machine for
`clear_after_s` closes it (CLEARED at the first reading that proves the absence); a code back
within that time continues the episode and counts as a flap (controllers drop and re-report
intermittent faults, and an episode per blink would bury the real ones). The occurrence count
is the controller's own (`oc`, 127 = not available), taken from the latest reading.

Codes are rare, so the state is a small dict per (slot, spn, fmi) and the loop runs over the
codes present in a batch; within a code everything is vectorised over the frame's flattened
code arrays, never over readings. It must never decide rule faults or do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from diagnosis.events import AlarmEvent, Transition, dtc_code
from diagnosis.frame import IntArray
from diagnosis.signals import DTC_OC_MAX
from diagnosis.state import Segments

Code = tuple[int, int]
"""(SPN, FMI) of a J1939 fault code."""


@dataclass(slots=True)
class DtcEpisode:
    """One open fault-code episode of one machine.

    Attributes:
        last_seen_ts: Time of the latest reading carrying the code.
        occurrences: The controller's occurrence count at that reading, None if not available.
        flaps: How often the code came back within the clear time.
    """

    last_seen_ts: int
    occurrences: int | None
    flaps: int = 0


@dataclass(frozen=True, slots=True)
class DtcBatch:
    """The fault codes of a batch, in the batch's reading positions.

    Attributes:
        row: Per active code, the index of the reading that carried it (non-decreasing).
        spn: Per active code, its SPN.
        fmi: Per active code, its FMI.
        oc: Per active code, its occurrence count.
    """

    row: IntArray
    spn: IntArray
    fmi: IntArray
    oc: IntArray


def _occurrences(oc: int) -> int | None:
    return oc if 0 <= oc <= DTC_OC_MAX else None


class DtcTracker:
    """Open fault-code episodes of every machine slot.

    Attributes:
        open: Per slot, its open episodes by code.
        suppressed: Per machine, reports of codes (one per reading carrying one) that opened no
            episode because the machine already held `max_open` (since `take_suppressed`).
    """

    def __init__(self) -> None:
        self.open: dict[int, dict[Code, DtcEpisode]] = {}
        self.suppressed: dict[str, int] = {}

    def take_suppressed(self) -> dict[str, int]:
        """The suppressed counts so far, per machine, and start counting again."""
        out, self.suppressed = self.suppressed, {}
        return out

    def forget(self, slot: int) -> None:
        """Drop every episode of a slot."""
        self.open.pop(slot, None)

    def reconcile(self, slot: int, codes: set[Code], last_ts: int) -> None:
        """Make the open episodes of a slot exactly `codes` (the store is the truth).

        Episodes the store does not know are dropped; codes it has open that replay did not
        see are opened as last seen at the machine's last reading, so they close after the
        clear time if the code does not come back.
        """
        current = self.open.get(slot, {})
        kept = {c: e for c, e in current.items() if c in codes}
        for code in codes - kept.keys():
            kept[code] = DtcEpisode(last_seen_ts=last_ts, occurrences=None)
        if kept:
            self.open[slot] = kept
        else:
            self.open.pop(slot, None)

    def process(
        self,
        sg: Segments,
        machine_ids: list[str],
        codes: DtcBatch,
        clear_after_ms: IntArray,
        prev_last_ts: IntArray,
        max_open: IntArray,
        count_suppressed: bool = True,
    ) -> list[AlarmEvent]:
        """Advance every episode through a batch.

        A code of a machine that already holds `max_open` open episodes opens none (it stays
        in the machine's readings; counted in `suppressed`); codes are taken by SPN, then FMI.

        Args:
            sg: The batch's segments.
            machine_ids: Per segment, the machine.
            codes: The batch's fault codes.
            clear_after_ms: Per segment, the absence that closes an episode.
            prev_last_ts: Per segment, the machine's last reading before this batch.
            max_open: Per segment, the most episodes its machine holds open.
            count_suppressed: Whether codes beyond `max_open` count in `suppressed` (not when
                history is replayed: those were counted when they were live).

        Returns:
            RAISED, UPDATED and CLEARED events (the engine puts them in time order).
        """
        events: list[AlarmEvent] = []
        seg_of = np.searchsorted(sg.starts, codes.row, side="right") - 1
        order = np.lexsort((codes.row, codes.fmi, codes.spn, seg_of))
        seg_s, spn_s, fmi_s = seg_of[order], codes.spn[order], codes.fmi[order]
        row_s, oc_s = codes.row[order], codes.oc[order]
        k = len(order)
        cut = np.ones(k, np.bool_)
        if k > 1:
            cut[1:] = (seg_s[1:] != seg_s[:-1]) | (spn_s[1:] != spn_s[:-1])
            cut[1:] |= fmi_s[1:] != fmi_s[:-1]
        bounds = [*np.flatnonzero(cut).tolist(), k]
        present = {(int(seg_s[a]), (int(spn_s[a]), int(fmi_s[a]))) for a in bounds[:-1]}
        # Open codes of this batch's machines that no reading carried: maybe absent long enough.
        # First, so that the episodes they close no longer count against `max_open`.
        candidates = [s for s, slot in enumerate(sg.slots.tolist()) if slot in self.open]
        for seg in candidates:
            slot = int(sg.slots[seg])
            for code, ep in list(self.open[slot].items()):
                if (seg, code) in present:
                    continue
                closed = self._close_after(sg, seg, ep.last_seen_ts, int(clear_after_ms[seg]))
                if closed is not None:
                    events.append(self._cleared(machine_ids[seg], code, ep, closed))
                    del self.open[slot][code]
            if not self.open[slot]:
                del self.open[slot]
        for a, b in pairwise(bounds):  # one code of one machine
            seg = int(seg_s[a])
            code = (int(spn_s[a]), int(fmi_s[a]))
            held = self.open.get(int(sg.slots[seg]), {})
            if code not in held and len(held) >= int(max_open[seg]):
                if count_suppressed:
                    name = machine_ids[seg]
                    self.suppressed[name] = self.suppressed.get(name, 0) + (b - a)
                continue
            events += self._code(
                sg,
                seg,
                machine_ids[seg],
                code,
                row_s[a:b],
                oc_s[a:b],
                int(clear_after_ms[seg]),
                int(prev_last_ts[seg]),
            )
        return events

    def _close_after(self, sg: Segments, seg: int, seen_ts: int, clear_ms: int) -> int | None:
        """Time of the first reading of a segment at least `clear_ms` after `seen_ts`."""
        start, end = int(sg.starts[seg]), int(sg.starts[seg] + sg.counts[seg])
        at = start + int(np.searchsorted(sg.ts_ms[start:end], seen_ts + clear_ms))
        return int(sg.ts_ms[at]) if at < end else None

    def _code(
        self,
        sg: Segments,
        seg: int,
        machine_id: str,
        code: Code,
        rows: IntArray,
        oc: IntArray,
        clear_ms: int,
        prev_last_ts: int,
    ) -> list[AlarmEvent]:
        """Events of one code of one machine whose readings carry it at `rows`."""
        slot = int(sg.slots[seg])
        ts = sg.ts_ms[rows]
        # Between two readings carrying the code: closed if a reading without it came at least
        # the clear time after the first; a flap if readings without it came, but sooner.
        before = np.empty(len(rows), np.int64)
        before[1:] = sg.ts_ms[rows[1:] - 1]  # the last reading before each later presence
        before[0] = sg.ts_ms[rows[0] - 1] if rows[0] > sg.starts[seg] else prev_last_ts
        seen = np.empty(len(rows), np.int64)
        seen[1:] = ts[:-1]
        ep = self.open.get(slot, {}).get(code)
        seen[0] = ep.last_seen_ts if ep is not None else -1
        is_gap = before > seen
        if ep is None:
            is_gap[0] = False
        is_closed = is_gap & (before >= seen + clear_ms)
        # Episodes of this batch: presences split where an absence closed the one before.
        bounds = [0, *np.flatnonzero(is_closed).tolist(), len(rows)]
        if bounds[1] == 0:
            bounds = bounds[1:]
        events: list[AlarmEvent] = []
        carried = ep
        if ep is not None and is_closed[0]:
            closed = self._close_after(sg, seg, ep.last_seen_ts, clear_ms)
            assert closed is not None  # the reading before rows[0] proves the absence
            events.append(self._cleared(machine_id, code, ep, closed))
            carried = None
        self.open.get(slot, {}).pop(code, None)
        for j, (a, b) in enumerate(pairwise(bounds)):
            is_new = j > 0 or carried is None
            if is_new:
                events.append(self._raised(machine_id, code, int(ts[a]), int(oc[a])))
                flaps = int(np.count_nonzero(is_gap[a + 1 : b]))
            else:
                assert carried is not None
                flaps = carried.flaps + int(np.count_nonzero(is_gap[a:b]))
            current = DtcEpisode(int(ts[b - 1]), _occurrences(int(oc[b - 1])), flaps)
            if b < len(rows):
                closed = self._close_after(sg, seg, current.last_seen_ts, clear_ms)
                assert closed is not None  # a reading before rows[b] proves the absence
                events.append(self._cleared(machine_id, code, current, closed))
                continue
            count = b - a - is_new  # presences after the RAISED reading make an UPDATED
            if count > 0:
                events.append(self._updated(machine_id, code, current, count))
            closed = self._close_after(sg, seg, current.last_seen_ts, clear_ms)
            if closed is not None:
                events.append(self._cleared(machine_id, code, current, closed))
            else:
                self.open.setdefault(slot, {})[code] = current
        if slot in self.open and not self.open[slot]:
            del self.open[slot]
        return events

    @staticmethod
    def _raised(machine_id: str, code: Code, ts: int, oc: int) -> AlarmEvent:
        spn, fmi = code
        occurrences = _occurrences(oc)
        seen = f" (occurrence count {occurrences})" if occurrences is not None else ""
        return AlarmEvent(
            machine_id,
            dtc_code(spn, fmi),
            Transition.RAISED,
            ts,
            spn=spn,
            fmi=fmi,
            occurrences=occurrences,
            detail=f"J1939 SPN {spn} FMI {fmi} active{seen}",
        )

    @staticmethod
    def _updated(machine_id: str, code: Code, ep: DtcEpisode, count: int) -> AlarmEvent:
        spn, fmi = code
        return AlarmEvent(
            machine_id,
            dtc_code(spn, fmi),
            Transition.UPDATED,
            ep.last_seen_ts,
            count=count,
            spn=spn,
            fmi=fmi,
            occurrences=ep.occurrences,
            detail=f"J1939 SPN {spn} FMI {fmi} still active in {count} readings, "
            f"flapped {ep.flaps} times",
        )

    @staticmethod
    def _cleared(machine_id: str, code: Code, ep: DtcEpisode, ts: int) -> AlarmEvent:
        spn, fmi = code
        return AlarmEvent(
            machine_id,
            dtc_code(spn, fmi),
            Transition.CLEARED,
            ts,
            spn=spn,
            fmi=fmi,
            occurrences=ep.occurrences,
            count=0,
            detail=f"J1939 SPN {spn} FMI {fmi} absent since "
            f"{(ts - ep.last_seen_ts) / 1000:.0f} s, flapped {ep.flaps} times",
        )
