"""The demo's fault schedule: a visible fault soon after the start, then one every few minutes,
rotating over the simulator's fault kinds and the fleet's machines.

Pure: the fleet and the timing in, the faults (times from the run's first reading) out. Most
kinds show only in a duty state (low oil pressure while the engine runs, a fuel theft while it is
off), and the simulated fleet's duty cycle is a function of its seed alone, which faults never
change (`simulators.faults`). So the schedule replays the fleet's duty cycle ahead of the run and
gives each fault to a machine that will be in the right state for the longest stretch from the
fault's start: the fault shows within a minute or two instead of whenever that machine next
starts. Past the replayed horizon, and for fleets too large to replay quickly, only kinds that
show in any state (a J1939 code, a machine carried off its site) are scheduled.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from simulators.faults import COMMON_DTCS, FaultKind, FaultSpec
from simulators.fleet import Fleet
from simulators.machines import MachineSpec
from simulators.state import OFF, WORKING

DEMO_ORDER: Final[tuple[FaultKind, ...]] = (
    "dtc",
    "low_oil_pressure",
    "outside_site",
    "charging_failure",
    "engine_overheat",
    "engine_power_loss",
    "fuel_drop_engine_off",
    "hydraulic_overheat",
    "machine_silent",
    "coolant_rising_fast",
)
"""The fault kinds the demo rotates over, the quickest to show first. All the simulator's but
`unexplained_anomaly`, which only an anomaly model sees, and a fresh demo has not trained one
(`telematics train`); it would be a fault that never shows."""

ANY_STATE: Final[frozenset[FaultKind]] = frozenset({"dtc", "outside_site"})
NEEDS_WORK: Final[frozenset[FaultKind]] = frozenset({"engine_power_loss", "machine_silent"})
NEEDS_OFF: Final[frozenset[FaultKind]] = frozenset({"fuel_drop_engine_off"})

WINDOW_S: Final = 600.0
"""How long a demo fault lasts: long enough to look at, short enough that alarms clear."""
LONG_WINDOW_S: Final[dict[FaultKind, float]] = {
    "machine_silent": 900.0,  # it waits for work, then needs 600 s of its window
    "fuel_drop_engine_off": 900.0,
}
FAST_RATES: Final[dict[FaultKind, float]] = {
    "engine_overheat": 4.0,  # °C/min: 85 -> 105 °C in about five minutes
    "hydraulic_overheat": 5.0,
    "coolant_rising_fast": 3.5,
}
"""Rates at the quick end of (or past) the kinds' ranges, so that a fault shows in minutes."""
CLEAR_MAGNITUDES: Final[dict[FaultKind, float]] = {
    "low_oil_pressure": 0.3,  # kept fraction: under the minimum curve at any speed, not only idle
}

CARRIED_OVER_S: Final = 240.0
"""How long a machine with an alarm still open from an earlier run on the same data folder gets
no fault: that alarm clears once the restarted fleet reports the machine healthy, and a fault
given meanwhile would only extend it, so its `alarm raised` line would never come."""

REPLAY_MAX_MACHINES: Final = 200
"""Larger fleets take more than a few seconds to replay two hours of."""
_MIN_STRETCH_S: Final = 120.0


@dataclass(frozen=True, slots=True)
class DemoTiming:
    """When the demo's faults come.

    Attributes:
        first_after_s: The first fault, after the run's first reading.
        every_s: Between two faults.
        horizon_s: How far ahead faults are scheduled.
        replay_s: How far ahead the fleet's duty cycle is replayed to choose machines.
        period_s: The fleet's reading period (the replay steps by it).
    """

    first_after_s: float = 30.0
    every_s: float = 180.0
    horizon_s: float = 12 * 3600.0
    replay_s: float = 2 * 3600.0
    period_s: float = 1.0


def duty_cycle(
    machines: Sequence[MachineSpec], seed: int, period_s: float, duration_s: float
) -> np.ndarray:
    """Each machine's duty state at every reading of a run, replayed: shape (steps, machines)."""
    period_ms = max(1, round(period_s * 1000))
    steps = int(duration_s * 1000 // period_ms)
    fleet = Fleet(machines, seed=seed, start_ts_ms=0)
    states = np.empty((steps, len(machines)), dtype=np.int8)
    for k in range(steps):
        states[k] = fleet.step((k + 1) * period_ms).state
    return states


def schedule(
    machines: Sequence[MachineSpec],
    timing: DemoTiming,
    *,
    seed: int = 0,
    first_customer: str | None = None,
    alarmed: Collection[str] = (),
) -> tuple[FaultSpec, ...]:
    """The demo's faults, `start_ts_ms` counted from the run's first reading.

    Args:
        machines: The fleet.
        timing: When faults come.
        seed: The fleet's seed (its duty cycle is replayed from it).
        first_customer: The first fault goes to one of this customer's machines (the customer
            whose token the banner prints), when it has one in the right state.
        alarmed: Machines with an open alarm at the start (a restarted demo); they get no fault
            for the first `CARRIED_OVER_S`.
    """
    replay_s = timing.replay_s if len(machines) <= REPLAY_MAX_MACHINES else 0.0
    states = duty_cycle(machines, seed, timing.period_s, replay_s) if replay_s > 0 else None
    # A machine carries one fault at a time, and none while an earlier run's alarm clears.
    busy_until = np.array([CARRIED_OVER_S if m.machine_id in alarmed else 0.0 for m in machines])
    last_used = np.full(len(machines), -1.0)
    specs = []
    offset_s, n = timing.first_after_s, 0
    while offset_s < timing.horizon_s:
        kind = DEMO_ORDER[n % len(DEMO_ORDER)]
        if states is None or offset_s + _MIN_STRETCH_S > replay_s:
            kind = ("dtc", "outside_site")[n % 2]
        idx = _choose(machines, kind, offset_s, timing.period_s, states, busy_until, last_used,
                      first_customer if n == 0 else None)  # fmt: skip
        if idx is not None:
            window = LONG_WINDOW_S.get(kind, WINDOW_S)
            specs.append(_spec(kind, machines[idx].machine_id, offset_s, window, n))
            busy_until[idx] = offset_s + window + 120.0  # and its alarm time to clear
            last_used[idx] = offset_s
        n += 1
        offset_s += timing.every_s
    return tuple(specs)


def _choose(
    machines: Sequence[MachineSpec],
    kind: FaultKind,
    offset_s: float,
    period_s: float,
    states: np.ndarray | None,
    busy_until: np.ndarray,
    last_used: np.ndarray,
    customer: str | None,
) -> int | None:
    """The free machine that stays longest in the state `kind` needs from `offset_s` (ties: the
    one faulted least recently); None if every machine is busy.
    """
    free = busy_until <= offset_s
    if customer is not None:
        own = free & np.array([m.customer_id == customer for m in machines])
        if own.any():
            free = own
    if not free.any():
        return None
    stretch = np.zeros(len(machines))
    if states is not None and kind not in ANY_STATE:
        start = min(int(offset_s / period_s), len(states) - 1)
        ahead = states[start:]
        if kind in NEEDS_OFF:
            fits = ahead == OFF
        elif kind in NEEDS_WORK:
            fits = ahead == WORKING
        else:
            fits = ahead != OFF
        # Steps in the right state before the first step that is not.
        broken = ~fits
        stretch = np.where(broken.any(axis=0), broken.argmax(axis=0), len(ahead)) * period_s
    score = np.where(free, stretch, -1.0)
    best = np.flatnonzero(score == score.max())
    return int(best[np.argmin(last_used[best])])


def _spec(kind: FaultKind, machine_id: str, offset_s: float, window_s: float, n: int) -> FaultSpec:
    spn = fmi = None
    if kind == "dtc":
        spn, fmi = COMMON_DTCS[n % len(COMMON_DTCS)]
    return FaultSpec(
        kind=kind,
        machine_id=machine_id,
        start_ts_ms=round(offset_s * 1000),
        duration_s=window_s,
        rate=FAST_RATES.get(kind),
        magnitude=CLEAR_MAGNITUDES.get(kind),
        spn=spn,
        fmi=fmi,
    )
