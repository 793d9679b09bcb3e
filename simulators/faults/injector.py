"""`FaultInjector`: the faults of one run, attached to the fleet, and their ground truth.

This module owns the fault class of each kind, each fault's own random generator (from the run
seed and the fault's kind, machine and start, so that faults never draw on the fleet's shared
generator) and `FaultInjector`, which builds the faults from their specs, adds them to the
fleet's step modifiers, applies their edits to every frame and collects the `GroundTruth`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from simulators.faults.effect import _Fault, _FrameEdit
from simulators.faults.engine import (
    _ChargingFailure,
    _CoolantRisingFast,
    _EngineOverheat,
    _EnginePowerLoss,
    _FuelDrop,
    _HydraulicOverheat,
    _LowOilPressure,
    _UnexplainedAnomaly,
)
from simulators.faults.ground_truth import GroundTruth
from simulators.faults.reporting import _ActiveCode, _MachineSilent, _OutsideSite
from simulators.faults.spec import FaultKind, FaultSpec
from simulators.fleet import Fleet
from simulators.machines import MachineSpec
from simulators.state import BoolArray, Frame

_SIMPLE: Final[Mapping[FaultKind, type[_Fault]]] = {
    "low_oil_pressure": _LowOilPressure,
    "engine_overheat": _EngineOverheat,
    "coolant_rising_fast": _CoolantRisingFast,
    "hydraulic_overheat": _HydraulicOverheat,
    "fuel_drop_engine_off": _FuelDrop,
    "charging_failure": _ChargingFailure,
    "engine_power_loss": _EnginePowerLoss,
    "machine_silent": _MachineSilent,
    "unexplained_anomaly": _UnexplainedAnomaly,
    "dtc": _ActiveCode,
}


def _fault_rng(seed: int, spec: FaultSpec) -> np.random.Generator:
    """The fault's own generator: independent of the fleet's and of every other fault's."""
    key = zlib.crc32(f"{spec.kind}|{spec.machine_id}|{spec.start_ts_ms}".encode())
    return np.random.default_rng([seed, key])


class FaultInjector:
    """The faults of one run: step modifiers for the fleet and the ground truth they produce.

    Args:
        machines: The fleet's machines, in fleet order.
        specs: Faults to inject. Faults on one machine may overlap; they then apply in order.
        seed: Seed of the faults' own generators (each fault gets one from this, its kind,
            machine and start); the run seed is a good choice.

    Raises:
        ValueError: A fault names a machine not in `machines`.
    """

    def __init__(
        self, machines: Sequence[MachineSpec], specs: Sequence[FaultSpec], *, seed: int = 0
    ) -> None:
        self.machines = tuple(machines)
        index = {m.machine_id: i for i, m in enumerate(self.machines)}
        strangers = sorted({s.machine_id for s in specs} - set(index))
        if strangers:
            raise ValueError(f"faults name machines not in the fleet: {', '.join(strangers)}")
        self.specs = tuple(specs)
        self._faults: list[_Fault] = []
        for spec in self.specs:
            idx, rng = index[spec.machine_id], _fault_rng(seed, spec)
            if spec.kind == "outside_site":
                self._faults.append(_OutsideSite(spec, idx, self.machines[idx], rng))
            else:
                self._faults.append(_SIMPLE[spec.kind](spec, idx, rng))

    @property
    def modifiers(self) -> tuple[_Fault, ...]:
        """One `StepModifier` per fault, in spec order."""
        return tuple(self._faults)

    def attach(self, fleet: Fleet) -> None:
        """Add the faults' modifiers to `fleet.modifiers`.

        Raises:
            ValueError: The fleet's machines are not the injector's.
        """
        if fleet.machines != self.machines:
            raise ValueError("the fleet's machines are not the ones the faults were planned for")
        fleet.modifiers.extend(self._faults)

    def observe(self, frame: Frame) -> tuple[Frame, BoolArray]:
        """The frame as published and the machines that publish it; records the ground truth.

        Call it on every frame the fleet yields, in order.

        Returns:
            The frame with the faults' edits (the original if none), and a mask that is False
            for machines whose reading is not published (machine_silent).
        """
        edit = _FrameEdit(frame)
        for fault in self._faults:
            fault.edit(edit)
        published = edit.result()
        for fault in self._faults:
            fault.record(published, edit.is_sent)
        return published, edit.is_sent

    def step(self, fleet: Fleet, ts_ms: int) -> tuple[Frame, BoolArray]:
        """`fleet.step(ts_ms)` then `observe` on its frame."""
        return self.observe(fleet.step(ts_ms))

    def ground_truth(self) -> tuple[GroundTruth, ...]:
        """One record per fault, in spec order, as of the latest observed frame."""
        return tuple(fault.ground_truth() for fault in self._faults)
