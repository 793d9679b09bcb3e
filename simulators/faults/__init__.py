"""Fault injection with ground truth: which machine goes wrong, how, and when it became visible.

This package owns the simulated faults: the fault kinds and specs (`spec`), fault plans, drawn at
random or loaded from JSON (`plan`), the ground-truth records and their file form
(`ground_truth`), and the injector (`injector`) with its fault effects: one `StepModifier` per
fault, run by `Fleet.step` after the physics, and the frame edits that cannot live in the fleet
state (a silenced machine's readings dropped, a carried-away machine's GPS fix). The effects'
machinery is in `effect`, the concrete faults in `engine` and `reporting`. The package is pure
apart from the plan and ground-truth file helpers and, like the rest of the simulator, speaks only
the wire contract: it must never import `telematics`, `diagnosis` or `dispatch` (enforced by
`scripts/check_layers.py`). Fault names equal the backend's fault codes (`docs/diagnosis.md`).

Use: build a `FaultInjector` from the fleet's machines and the `FaultSpec`s, `attach` it to the
`Fleet`, and pass every frame through `observe`, which returns the frame as published and the mask
of machines that publish; `ground_truth()` then says what happened. `publisher.run` does this when
`SimConfig.faults` is set.

Invariants:

* Healthy machines are untouched: a run with faults gives their frames bit for bit as the
  same-seed run without. Faults draw only on their own generators (seeded from the run seed and the
  fault's kind, machine and start), and they never change what decides how many draws the fleet's
  shared generator makes: a faulty machine's duty state, dwell time, position and refuels stay
  exactly those of its healthy run. So faults never *force* a duty state; a fault that needs one
  waits for it (below), and a fault that needs a position change edits the published GPS fix.
* A fault acts only inside its planned window `[start_ts_ms, start_ts_ms + duration_s)`, except
  where noted (an outside_site machine is driven back after it). Its effect ends when its cause is
  removed; slow signals (temperatures) then relax through the fleet's own physics.

Kinds: the effect, the duty it needs, `magnitude` and `rate` (None draws from the range given).

* low_oil_pressure (worn pump, leak): oil pressure times magnitude, the kept fraction 0.35-0.45
  (gradual: from 1 over ramp_s). Shows while running.
* engine_overheat (clogged radiator, fan belt, coolant loss): coolant climbs at rate °C/min to
  magnitude (108-115 °C), then holds. Sudden rate 2-4 (so coolant_rising_fast too); gradual: the
  ceiling rises from 90 °C to magnitude over ramp_s, followed at 0.6 °C/min at most. Climbs while
  running; off, it cools as usual.
* coolant_rising_fast (sudden coolant loss): waits until running with coolant >= 85 °C, then
  climbs at rate (2-4 °C/min) to magnitude (100-103 °C, below the overheat threshold); ends at
  that peak, when the engine is shut down, or with the window.
* hydraulic_overheat (oil cooler clogged, relief valve open): hydraulic oil climbs at rate to
  magnitude (98-110 °C), then holds. Sudden rate 1-2 °C/min; gradual: the ceiling rises from
  70 °C over ramp_s, followed at 0.6 °C/min at most.
* fuel_drop_engine_off: sudden (theft) drains magnitude of the tank (0.2-0.4) at rate % of the
  tank a minute (the whole amount in 2-5 min); gradual (leak) loses rate % a minute (0.08-0.15,
  5-9 %/h), at most magnitude (0.15). Waits until the engine has been off for 60 s and the
  stop will last long enough; never drains below the refuel threshold + 2 points.
* charging_failure (alternator, belt): the alternator gives nothing (gradual: fades over
  ramp_s), so the running battery falls to its rest voltage less the load's sag, then drains at
  rate V/h (1.0) while running, down to magnitude V (0.8-1.2) below rest: ~24.5 -> 23.5 V.
* engine_power_loss (air filter, injector): while working, engine speed falls to
  (1 - magnitude) x min(set speed, rated speed), magnitude 0.22-0.30, and load reads 95-100 %;
  oil pressure follows the pump curve at the lower speed (gradual: grows over ramp_s).
* machine_silent (telematics unit loses power): waits until working, then publishes nothing
  until the window ends.
* outside_site (carried off on a truck): from the window's start the GPS fix leaves the site at
  rate m/s (10-20) to magnitude m away (3000-8000), stays, and is driven back after the window.
  The fleet's own position is untouched (its physics keeps machines inside the site).
* unexplained_anomaly (no rule covers it): variant `oil_pressure_high`, a relief valve stuck
  closed: oil pressure times magnitude (1.4-1.6) while running; variant `overcharging`, a failed
  voltage regulator: the alternator charges at magnitude V (29.5-30.5); variant
  `oil_pressure_low_for_speed`, a weak pressure-regulator spring: oil pressure is right at idle
  but rises less than it should with speed, down to magnitude (0.75-0.85) times healthy at rated
  speed (in between, by the fraction of the way from idle to rated): a broken relation to engine
  speed, with every reading within the healthy range and above both low-oil-pressure limits (the
  maker's curve and 65 % of the machine's own baseline). Gradual: over ramp_s.
* dtc: code (spn, fmi, oc) in every reading of the window; flapping: on for flap_readings
  readings, off as many, and so on, oc counting each return.

Gradual forms: low_oil_pressure, engine_overheat, hydraulic_overheat, fuel_drop_engine_off,
charging_failure, engine_power_loss, unexplained_anomaly; the others are sudden only. A waiting
fault takes effect at the first step in its window that has its duty and leaves enough window for
the effect to show (machine_silent 600 s, coolant_rising_fast 300 s, fuel drops: the drain
plus 300 s or 3.5 points of leak plus 120 s, also within the stop's remaining off time); if none
comes, it never starts. A fuel drop ends at the window's end or on the last step before the
engine restarts (the off dwell is known): the tank is then topped back up by what was taken
(flagged as a refuel), so that the machine's later refuels, and so the shared random stream,
match its healthy run.

Ground truth (`GroundTruth`, one JSON object a line): all times are the faulty machine's reading
times. `start_ts_ms` is the first reading with the fault in effect, `end_ts_ms` the first reading
after its effect was removed (for machine_silent the first reading published again, for
outside_site the first back at its site position), `visible_ts_ms` the first reading in effect
whose *published* values meet the kind's physical criterion (the fault's healthy reference is the
fleet's value before the fault changed it, on the same step):

* low_oil_pressure: engine running and oil pressure below 60 % of the healthy pressure.
* engine_overheat: coolant at or above 105 °C.
* coolant_rising_fast: coolant above 90 °C and risen at 1.5 °C/min or more since the last reading
  at least 120 s older.
* hydraulic_overheat: hydraulic oil at or above 95 °C.
* fuel_drop_engine_off: engine off and fuel more than 3 points below its level at the first
  reading of this stop.
* charging_failure: engine running for more than 60 s and battery below 25.5 V.
* engine_power_loss: load at or above 85 % and engine speed at most 80 % of the healthy speed.
* machine_silent: the first reading not published.
* outside_site: position more than site radius + 100 m from the site centre.
* unexplained_anomaly: oil_pressure_high: running and oil pressure at least 125 % of healthy;
  overcharging: running for more than 60 s and battery at or above 29.0 V;
  oil_pressure_low_for_speed: running and oil pressure at most 90 % of healthy.
* dtc: the first reading that carries the code.
"""

from simulators.faults.ground_truth import GroundTruth, read_ground_truth, write_ground_truth
from simulators.faults.injector import FaultInjector
from simulators.faults.plan import FaultPlan, load_plan, plan_faults, save_plan
from simulators.faults.spec import (
    ANOMALY_VARIANTS,
    COMMON_DTCS,
    DEFAULT_DURATION_S,
    DEFAULT_RAMP_S,
    FAULT_DESCRIPTIONS,
    FAULT_KINDS,
    GRADUAL_KINDS,
    AnomalyVariant,
    FaultForm,
    FaultKind,
    FaultSpec,
    ParamValue,
)

__all__ = [
    "ANOMALY_VARIANTS",
    "COMMON_DTCS",
    "DEFAULT_DURATION_S",
    "DEFAULT_RAMP_S",
    "FAULT_DESCRIPTIONS",
    "FAULT_KINDS",
    "GRADUAL_KINDS",
    "AnomalyVariant",
    "FaultForm",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "FaultSpec",
    "GroundTruth",
    "ParamValue",
    "load_plan",
    "plan_faults",
    "read_ground_truth",
    "save_plan",
    "write_ground_truth",
]
