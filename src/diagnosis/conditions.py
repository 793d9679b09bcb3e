"""Rule conditions: what each rule fault's readings mean, as vector kernels over a batch.

This module owns the meaning of every rule: per reading, whether it meets the raise or the clear
condition of a fault, whether that is decidable (NaN neither raises nor clears), the value an
event reports, and the words that describe it. Each rule is a handful of vector operations over
the whole batch (`Batch`: per-machine segments and their thresholds), with the carry-in each one
needs (engine state, fuel level at engine stop, coolant rate buckets) read from and written back
to the `MachineState` it is given; Python loops run over machine models, never over readings.

`Batch`, `Tables`, `Param`, `take`, `EngineState` and `engine_state`, what the kernels take, are
`diagnosis.rule_batch`'s and re-exported here, so the engine imports the rules from this module.

It must never keep state of its own, decide persistence or hysteresis, or build events (the
engine runs conditions through episodes, `diagnosis.state.episodes`, and emits the events); and
never do I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from diagnosis import events as ev
from diagnosis.events import Transition
from diagnosis.frame import BoolArray, FloatArray
from diagnosis.rule_batch import Batch, EngineState, Param, Tables, engine_state, take
from diagnosis.signals import SIGNAL_INDEX
from diagnosis.state import (
    ENGINE_OFF,
    EPISODE_FAULTS,
    NO_TS,
    RATE_RING,
    RATE_STEPS,
    MachineState,
)

__all__ = [
    "Batch",
    "Conditions",
    "EngineState",
    "Param",
    "Tables",
    "charging",
    "coolant_rising_fast",
    "engine_overheat",
    "engine_power_loss",
    "engine_state",
    "fmt",
    "fuel_drop",
    "hydraulic_overheat",
    "low_oil_pressure",
    "outside_site",
    "take",
]

_OUTSIDE_SITE_ROW: Final = EPISODE_FAULTS.index(ev.OUTSIDE_SITE)
_EARTH_M_PER_DEG: Final = 6_371_008.8 * np.pi / 180.0  # mean Earth radius
_SPEED: Final = SIGNAL_INDEX["engine_speed_rpm"]


def _at(x: Param, i: int) -> float:
    return x if isinstance(x, float) else float(x[i])


def fmt(x: float, digits: int = 0) -> str:
    """A figure for an event detail: thousands separated, `digits` decimals."""
    return f"{x:,.{digits}f}"


@dataclass(frozen=True, slots=True)
class Conditions:
    """A rule fault's conditions per reading, and how to describe its events."""

    is_raise: BoolArray
    raise_known: BoolArray  # the raise condition is decidable (NaN neither raises nor clears)
    is_clear: BoolArray
    clear_known: BoolArray
    value: FloatArray
    signal: str | None
    higher_is_worse: bool
    describe: Callable[[int, Transition], str]


def low_oil_pressure(batch: Batch, reference: FloatArray | None = None) -> Conditions:
    """`low_oil_pressure`: engine running and oil pressure below the curve over engine speed,
    or below `baseline_raise_fraction` of `reference`.

    Args:
        batch: The batch.
        reference: Per reading, the machine's own healthy oil pressure at that speed and load
            (`AnomalyStage.oil_ref`), NaN where unknown; None for none at all. Where it is
            known, clearing also needs `baseline_clear_fraction` of it.
    """
    speed, oil = batch.values[_SPEED], batch.signal("oil_pressure_kpa")
    sets = batch.tables.sets
    present = batch.present.tolist()
    running = speed > 0
    # Above the highest curve point plus margin a pressure clears whatever the speed: only
    # the readings below it need the curve.
    ceiling = max(max(sets[m].low_oil_pressure.curve_kpa) for m in present)
    ceiling += max(sets[m].low_oil_pressure.clear_margin_kpa for m in present)
    is_high = oil > ceiling
    is_clear = running & is_high
    is_raise = np.zeros(len(speed), np.bool_)
    curve = np.full(len(speed), np.nan)
    near = np.flatnonzero(running & ~is_high)
    if len(near):
        models = batch.model_r()[near] if len(present) > 1 else None
        for m in present:  # a few machine models, not readings
            at = near if models is None else near[models == m]
            c = sets[m].low_oil_pressure
            curve[at] = np.interp(speed[at], c.curve_rpm, c.curve_kpa)
        margin = take(batch.param(lambda t: t.low_oil_pressure.clear_margin_kpa), near)
        is_raise[near] = oil[near] < curve[near]
        is_clear[near] = oil[near] > curve[near] + margin
    if reference is not None:
        with np.errstate(invalid="ignore"):
            ratio = oil / reference  # NaN where the reference is unknown
        is_below = running & (
            ratio < batch.param(lambda t: t.low_oil_pressure.baseline_raise_fraction)
        )
        is_raise |= is_below
        is_clear &= ~(ratio < batch.param(lambda t: t.low_oil_pressure.baseline_clear_fraction))
    known = (speed == 0) | (running & ~np.isnan(oil))

    def describe(i: int, tr: Transition) -> str:
        c = sets[int(batch.model_seg[batch.seg_of(i)])].low_oil_pressure
        limit = float(np.interp(speed.item(i), c.curve_rpm, c.curve_kpa))
        head = f"oil pressure {fmt(oil.item(i))} kPa at {fmt(speed.item(i))} rpm"
        ref = math.nan if reference is None else reference.item(i)
        own = f"this machine's healthy {fmt(ref)} kPa"
        if tr is Transition.CLEARED:
            if math.isnan(ref):
                return f"{head}, back above {fmt(limit + c.clear_margin_kpa)} kPa"
            return f"{head}, back to {oil.item(i) / ref:.0%} of {own}"
        if oil.item(i) < limit:
            return f"{head}, below the minimum of {fmt(limit)} kPa"
        return f"{head}, {oil.item(i) / ref:.0%} of {own} (minimum {c.baseline_raise_fraction:.0%})"

    return Conditions(
        is_raise,
        known,
        is_clear,
        known,
        oil,
        "oil_pressure_kpa",
        False,
        describe,
    )


def _temperature(batch: Batch, signal: str, label: str, fault: str) -> Conditions:
    temp = batch.signal(signal)
    hi = batch.param(lambda t: getattr(t, fault).raise_c)
    lo = batch.param(lambda t: getattr(t, fault).clear_c)
    is_raise = temp >= hi
    is_clear = temp < lo
    known = ~np.isnan(temp)

    def describe(i: int, tr: Transition) -> str:
        if tr is Transition.CLEARED:
            return f"{label} {fmt(temp.item(i), 1)} °C, below {fmt(_at(lo, i), 1)} °C again"
        return f"{label} {fmt(temp.item(i), 1)} °C, at or above {fmt(_at(hi, i), 1)} °C"

    return Conditions(
        is_raise,
        known,
        is_clear,
        known,
        temp,
        signal,
        True,
        describe,
    )


def engine_overheat(batch: Batch) -> Conditions:
    """`engine_overheat`: coolant at or above its limit."""
    return _temperature(batch, "coolant_temp_c", "coolant", "engine_overheat")


def hydraulic_overheat(batch: Batch) -> Conditions:
    """`hydraulic_overheat`: hydraulic oil at or above its limit."""
    return _temperature(batch, "hydraulic_oil_temp_c", "hydraulic oil", "hydraulic_overheat")


def coolant_rising_fast(batch: Batch, st: MachineState) -> Conditions:
    """`coolant_rising_fast`: past thermostat opening and rising fast; updates the rate buckets."""
    temp = batch.signal("coolant_temp_c")
    rate = _coolant_rate(batch, st, temp)
    floor = batch.param(lambda t: t.coolant_rising_fast.min_temp_c)
    fast = batch.param(lambda t: t.coolant_rising_fast.raise_c_per_min)
    slow = batch.param(lambda t: t.coolant_rising_fast.clear_c_per_min)
    span_s = batch.param(lambda t: t.coolant_rising_fast.span_s)
    is_hot = temp > floor
    is_raise = is_hot & (rate > fast)
    is_cool = temp <= floor
    is_clear = is_cool | (is_hot & (rate < slow))
    known = is_cool | (is_hot & ~np.isnan(rate))

    def describe(i: int, tr: Transition) -> str:
        head = f"coolant {fmt(temp.item(i), 1)} °C"
        if tr is Transition.CLEARED:
            if temp.item(i) <= _at(floor, i):
                return f"{head}, at or below {fmt(_at(floor, i))} °C again"
            return f"{head}, rising {fmt(rate.item(i), 2)} °C/min, below {_at(slow, i)} °C/min"
        return (
            f"{head}, rising {fmt(rate.item(i), 2)} °C/min over "
            f"{fmt(_at(span_s, i) / 60, 1)} min, faster than {_at(fast, i)} °C/min"
        )

    return Conditions(
        is_raise,
        known,
        is_clear,
        known,
        temp,
        "coolant_temp_c",
        True,
        describe,
    )


def _coolant_rate(batch: Batch, st: MachineState, temp: FloatArray) -> FloatArray:
    """°C/min at each reading against the last sample of the bucket one span before.

    Buckets are aligned on epoch time, so the reference does not depend on where batches
    start; each machine remembers the last sample of its latest RATE_RING buckets.
    """
    sg = batch.sg
    n = len(sg)
    rate = np.full(n, np.nan)
    bucket_ms = batch.param(lambda t: t.coolant_rising_fast.span_s * 1000 / RATE_STEPS)
    is_valid = ~np.isnan(temp)
    v_idx = np.flatnonzero(is_valid)
    if len(v_idx) == 0:
        return rate
    seg_r = sg.spread(np.arange(len(sg.starts), dtype=np.int64))
    b_ms = bucket_ms if isinstance(bucket_ms, float) else bucket_ms[v_idx]
    b = sg.ts_ms[v_idx] // np.asarray(b_ms).astype(np.int64)
    seg_v = seg_r[v_idx]
    key = seg_v * (1 << 34) + b
    # Last valid sample of each (machine, bucket).
    is_last = np.ones(len(v_idx), np.bool_)
    is_last[:-1] = key[1:] != key[:-1]
    lasts = np.flatnonzero(is_last)
    floor = batch.param(lambda t: t.coolant_rising_fast.min_temp_c)
    is_hot = temp[v_idx] > take(floor, v_idx)
    h = np.flatnonzero(is_hot)
    if len(h):
        want = key[h] - RATE_STEPS
        pos = np.minimum(np.searchsorted(key[lasts], want), len(lasts) - 1)
        in_batch = key[lasts][pos] == want
        ref_i = v_idx[lasts[pos]]
        ref_ts = np.where(in_batch, sg.ts_ms[ref_i], NO_TS)
        ref_c = np.where(in_batch, temp[ref_i], np.nan)
        # Not in this batch: the machine's remembered buckets.
        slot = sg.slots[seg_v[h]]
        rb = b[h] - RATE_STEPS
        ring = rb % RATE_RING
        is_old = ~in_batch & (st.rate_bucket[slot, ring] == rb)
        ref_ts = np.where(is_old, st.rate_ts[slot, ring], ref_ts)
        ref_c = np.where(is_old, st.rate_c[slot, ring], ref_c)
        ok = ref_ts != NO_TS
        at = v_idx[h]
        dt = np.where(ok, sg.ts_ms[at] - ref_ts, 1)
        rate[at] = np.where(ok, (temp[at] - ref_c) * 60_000.0 / dt, np.nan)
    # Remember the latest RATE_RING buckets of each machine.
    last_b = b[lasts]
    seg_l = seg_v[lasts]
    newest = np.full(len(sg.starts), NO_TS, np.int64)
    np.maximum.at(newest, seg_l, last_b)
    keep = last_b > newest[seg_l] - RATE_RING
    slot = sg.slots[seg_l[keep]]
    ring = last_b[keep] % RATE_RING
    st.rate_bucket[slot, ring] = last_b[keep]
    st.rate_ts[slot, ring] = sg.ts_ms[v_idx[lasts[keep]]]
    st.rate_c[slot, ring] = temp[v_idx[lasts[keep]]]
    return rate


def fuel_drop(batch: Batch, st: MachineState, eng: EngineState) -> Conditions:
    """`fuel_drop_engine_off`: fuel below its level at engine stop; updates that level."""
    sg = batch.sg
    fuel = batch.signal("fuel_level_pct")
    speed = batch.values[_SPEED]
    is_off = eng.state == ENGINE_OFF
    # Reference: the level at engine stop, lifted by any rise since (a refuel is no drop).
    # A running maximum per off stretch: offsetting each stretch by 1000 keeps the maxima of
    # different stretches apart (levels are 0-100 %).
    is_stop = is_off & (eng.before != ENGINE_OFF)
    cut = is_stop.copy()
    cut[sg.starts] = True
    group = np.cumsum(cut).astype(np.float64) * 1000.0
    level = np.where(is_off & ~np.isnan(fuel), np.clip(fuel, 0.0, 100.0), -1.0)
    carry_ref = st.fuel_ref_pct[sg.slots]
    is_carried = (eng.carry == ENGINE_OFF) & ~is_stop[sg.starts] & ~np.isnan(carry_ref)
    firsts = sg.starts[is_carried]
    level[firsts] = np.maximum(level[firsts], carry_ref[is_carried])
    ref = np.maximum.accumulate(level + group) - group
    ref[(ref < 0) | ~is_off] = np.nan
    st.fuel_ref_pct[sg.slots] = ref[sg.last]
    drop = ref - fuel
    hi = batch.param(lambda t: t.fuel_drop_engine_off.raise_drop_pct)
    lo = batch.param(lambda t: t.fuel_drop_engine_off.clear_drop_pct)
    stopped = (speed == 0) & ~np.isnan(drop)
    running = speed > 0
    is_raise = stopped & (drop > hi)
    is_clear = running | (stopped & (drop <= lo))
    known = running | stopped

    def describe(i: int, tr: Transition) -> str:
        if tr is Transition.CLEARED:
            if speed.item(i) > 0:
                return f"engine running again, fuel level {fmt(fuel.item(i), 1)} %"
            return f"fuel level {fmt(fuel.item(i), 1)} %, back to {fmt(ref.item(i), 1)} %"
        return (
            f"fuel level {fmt(fuel.item(i), 1)} % with the engine off, "
            f"{fmt(drop.item(i), 1)} points below {fmt(ref.item(i), 1)} % at engine stop"
        )

    return Conditions(
        is_raise,
        known,
        is_clear,
        known,
        fuel,
        "fuel_level_pct",
        False,
        describe,
    )


def charging(batch: Batch, eng: EngineState) -> Conditions:
    """`charging_failure`: battery low after the engine has run long enough."""
    battery = batch.signal("battery_v")
    speed = batch.values[_SPEED]
    low = batch.param(lambda t: t.charging_failure.raise_v)
    good = batch.param(lambda t: t.charging_failure.clear_v)
    warm_ms = batch.param(lambda t: t.charging_failure.min_running_s * 1000)
    is_raise = battery < low
    ran_ms = np.zeros(0, np.int64)
    if bool(is_raise.any()):  # only then is it worth knowing how long the engine has run
        run_start = eng.run_start(batch.sg)
        ran_ms = batch.sg.ts_ms - run_start
        is_raise &= (speed > 0) & (run_start != NO_TS) & (ran_ms >= warm_ms)
    is_clear = battery >= good
    known = ~np.isnan(battery)
    raise_known = known & ~np.isnan(speed)
    band = batch.param(lambda t: t.charging_failure.raise_band_v)
    raise_known &= ~((battery >= low) & (battery < low + band) & (speed > 0))

    def describe(i: int, tr: Transition) -> str:
        if tr is Transition.CLEARED:
            return f"battery {fmt(battery.item(i), 2)} V, at or above {_at(good, i)} V again"
        return (
            f"battery {fmt(battery.item(i), 2)} V with the engine running for "
            f"{fmt(ran_ms.item(i) / 1000)} s, below {_at(low, i)} V"
        )

    return Conditions(
        is_raise,
        raise_known,
        is_clear,
        known,
        battery,
        "battery_v",
        False,
        describe,
    )


def engine_power_loss(batch: Batch) -> Conditions:
    """`engine_power_loss`: high load with engine speed sagging below a share of rated."""
    speed, load = batch.values[_SPEED], batch.signal("load_pct")
    rated = batch.param(lambda t: t.engine_power_loss.rated_rpm)
    load_min = batch.param(lambda t: t.engine_power_loss.load_pct)
    sag = batch.param(lambda t: t.engine_power_loss.raise_speed_frac)
    back = batch.param(lambda t: t.engine_power_loss.clear_speed_frac)
    is_loaded = load >= load_min
    is_raise = is_loaded & (speed < rated * sag) & (speed > 0)
    is_clear = (load < load_min) | (speed > rated * back)
    known = ~np.isnan(speed) & ~np.isnan(load)

    def describe(i: int, tr: Transition) -> str:
        head = f"engine speed {fmt(speed.item(i))} rpm at {fmt(load.item(i))} % load"
        r = _at(rated, i)
        if tr is Transition.CLEARED:
            return f"{head}, load below {_at(load_min, i):.0f} % or speed recovered"
        return (
            f"{head}, below {fmt(r * _at(sag, i))} rpm "
            f"({_at(sag, i) * 100:.0f} % of rated {fmt(r)} rpm)"
        )

    return Conditions(
        is_raise,
        known,
        is_clear,
        known,
        speed,
        "engine_speed_rpm",
        False,
        describe,
    )


def outside_site(batch: Batch, st: MachineState) -> Conditions | None:
    """`outside_site`: farther from the site centre than its radius; None when nothing can be."""
    sg = batch.sg
    site = st.site[:, sg.slots]
    has_site = ~np.isnan(site[2])
    if not bool(has_site.any()) and not bool(st.active[_OUTSIDE_SITE_ROW].any()):
        return None  # machines without a site are never outside
    lat, lon = batch.signal("lat"), batch.signal("lon")
    out_m = batch.tables.of(lambda t: t.outside_site.raise_margin_m)[batch.model_seg]
    in_m = batch.tables.of(lambda t: t.outside_site.clear_margin_m)[batch.model_seg]
    coslat = np.cos(np.radians(site[0]))
    # A machine whose bounding box lies well inside its site needs no distance per reading
    # (a NaN anywhere makes the box NaN, and the machine is checked reading by reading).
    far_dy = np.maximum(
        np.abs(np.maximum.reduceat(lat, sg.starts) - site[0]),
        np.abs(np.minimum.reduceat(lat, sg.starts) - site[0]),
    )
    far_dx = np.maximum(
        np.abs(np.maximum.reduceat(lon, sg.starts) - site[1]),
        np.abs(np.minimum.reduceat(lon, sg.starts) - site[1]),
    )
    corner_m = np.hypot(far_dx * coslat, far_dy) * _EARTH_M_PER_DEG
    # Active machines are measured anyway: their CLEARED event reports the distance.
    active = st.active[_OUTSIDE_SITE_ROW, sg.slots]
    check = has_site & (active | ~(corner_m <= site[2] + in_m))
    n = len(sg)
    # Machines without a site, and machines well inside it, are known to be inside.
    is_raise = np.zeros(n, np.bool_)
    is_clear = np.ones(n, np.bool_)
    known = np.ones(n, np.bool_)
    dist = np.full(n, np.nan)
    if bool(check.any()):
        sub, idx = sg.subset(check)
        lat0, lon0, radius, cos0, out_r, in_r = (
            sub.spread(a[check]) for a in (*site, coslat, out_m, in_m)
        )
        # Equirectangular: exact enough over a few kilometres, and cheap.
        dlon = (lon[idx] - lon0 + 180.0) % 360.0 - 180.0
        d = np.hypot(dlon * cos0, lat[idx] - lat0) * _EARTH_M_PER_DEG
        dist[idx] = d
        is_raise[idx] = d > radius + out_r
        is_clear[idx] = d <= radius + in_r
        known[idx] = ~np.isnan(d)

    def describe(i: int, tr: Transition) -> str:
        seg = int(np.searchsorted(sg.starts, i, side="right")) - 1
        if np.isnan(site[2, seg]):
            return "no site registered any more"
        head = f"{fmt(dist.item(i))} m from the site centre, site radius {fmt(site[2, seg])} m"
        if tr is Transition.CLEARED:
            return f"{head}: back inside"
        return f"{head}: outside by more than {fmt(out_m[seg])} m"

    return Conditions(is_raise, known, is_clear, known, dist, None, True, describe)
