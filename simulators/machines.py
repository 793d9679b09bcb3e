"""Machine models and fleet rosters: what each kind of machine is and which machines exist.

This module owns the per-model constants (engine speeds, tank sizes, fuel burn, duty-cycle
transitions) and the roster generator that names machines, assigns customers and places sites. It
is pure: no clock, no I/O.

The figures are those of common machines of each class: a 20-t crawler excavator (registered as
a SANY SY215C), a 50-60 m boom concrete pump truck (SY5419THB 56E) and a 50-t truck crane
(STC500), all on a 24 V electrical system.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, get_args

import numpy as np

ModelName = Literal["excavator", "pump_truck", "crane"]
MODELS: Final[tuple[ModelName, ...]] = get_args(ModelName)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The constants of one machine model.

    State-indexed tuples follow the order off, idle, working, travelling.

    Attributes:
        code: Two-letter code used in machine ids.
        designation: The model designation the machines register with (a real machine of the
            kind; the simulator's kind is registered as the machine class).
        idle_rpm: Mean low idle speed.
        rated_rpm: Rated engine speed, where oil pressure reaches its rated value.
        work_rpm: Range of throttle settings while working.
        travel_rpm: Range of engine speeds while travelling.
        idle_load_pct: Engine load at idle.
        work_load_pct: Range of mean engine load while working.
        travel_load_pct: Range of engine load while travelling.
        work_cycle_s: Period of the working cycle (dig-swing-dump, pump stroke, lift).
        work_cycle_amp_pct: Amplitude of the load swing over one working cycle.
        tank_l: Fuel tank size.
        idle_fuel_lph: Fuel burn at idle.
        full_load_fuel_lph: Fuel burn at 100 % load.
        travel_speed_mps: Top speed while moving around the site.
        hydraulic_rise_c: Hydraulic oil temperature rise above ambient at full load.
        site_radius_m: Typical radius of the site the machine works in.
        dwell_mean_s: Mean time spent in each state.
        transitions: Probability of each next state, from each state (rows sum to 1).
    """

    code: str
    designation: str
    idle_rpm: float
    rated_rpm: float
    work_rpm: tuple[float, float]
    travel_rpm: tuple[float, float]
    idle_load_pct: float
    work_load_pct: tuple[float, float]
    travel_load_pct: tuple[float, float]
    work_cycle_s: float
    work_cycle_amp_pct: float
    tank_l: float
    idle_fuel_lph: float
    full_load_fuel_lph: float
    travel_speed_mps: float
    hydraulic_rise_c: float
    site_radius_m: float
    dwell_mean_s: tuple[float, float, float, float]
    transitions: tuple[
        tuple[float, float, float, float],
        tuple[float, float, float, float],
        tuple[float, float, float, float],
        tuple[float, float, float, float],
    ]


MODEL_SPECS: Final[Mapping[ModelName, ModelSpec]] = MappingProxyType(
    {
        "excavator": ModelSpec(
            code="EX",
            designation="SY215C",
            idle_rpm=800.0,
            rated_rpm=2000.0,
            work_rpm=(1750.0, 2050.0),
            travel_rpm=(1500.0, 1800.0),
            idle_load_pct=10.0,
            work_load_pct=(55.0, 85.0),
            travel_load_pct=(35.0, 55.0),
            work_cycle_s=18.0,
            work_cycle_amp_pct=15.0,
            tank_l=400.0,
            idle_fuel_lph=3.5,
            full_load_fuel_lph=24.0,
            travel_speed_mps=1.2,
            hydraulic_rise_c=45.0,
            site_radius_m=300.0,
            dwell_mean_s=(2400.0, 240.0, 1500.0, 120.0),
            transitions=(
                (0.0, 1.0, 0.0, 0.0),
                (0.15, 0.0, 0.65, 0.2),
                (0.05, 0.7, 0.0, 0.25),
                (0.05, 0.35, 0.6, 0.0),
            ),
        ),
        "pump_truck": ModelSpec(
            code="PT",
            designation="SY5419THB 56E",
            idle_rpm=750.0,
            rated_rpm=1900.0,
            work_rpm=(1600.0, 1900.0),
            travel_rpm=(1400.0, 1800.0),
            idle_load_pct=12.0,
            work_load_pct=(50.0, 80.0),
            travel_load_pct=(30.0, 50.0),
            work_cycle_s=6.0,
            work_cycle_amp_pct=10.0,
            tank_l=400.0,
            idle_fuel_lph=4.0,
            full_load_fuel_lph=32.0,
            travel_speed_mps=4.0,
            hydraulic_rise_c=50.0,
            site_radius_m=250.0,
            dwell_mean_s=(3000.0, 600.0, 2400.0, 180.0),
            transitions=(
                (0.0, 1.0, 0.0, 0.0),
                (0.2, 0.0, 0.6, 0.2),
                (0.1, 0.8, 0.0, 0.1),
                (0.1, 0.5, 0.4, 0.0),
            ),
        ),
        "crane": ModelSpec(
            code="CR",
            designation="STC500",
            idle_rpm=750.0,
            rated_rpm=2100.0,
            work_rpm=(1600.0, 1900.0),
            travel_rpm=(1500.0, 2000.0),
            idle_load_pct=8.0,
            work_load_pct=(30.0, 60.0),
            travel_load_pct=(35.0, 60.0),
            work_cycle_s=45.0,
            work_cycle_amp_pct=15.0,
            tank_l=300.0,
            idle_fuel_lph=3.0,
            full_load_fuel_lph=28.0,
            travel_speed_mps=3.0,
            hydraulic_rise_c=30.0,
            site_radius_m=200.0,
            dwell_mean_s=(2400.0, 900.0, 900.0, 90.0),
            transitions=(
                (0.0, 1.0, 0.0, 0.0),
                (0.2, 0.0, 0.7, 0.1),
                (0.05, 0.85, 0.0, 0.1),
                (0.05, 0.45, 0.5, 0.0),
            ),
        ),
    }
)
"""Constants of every model; the position of a model in this mapping is its model index."""


@dataclass(frozen=True, slots=True)
class Site:
    """Where a machine works: a disc on the ground.

    Attributes:
        lat: Latitude of the centre, degrees.
        lon: Longitude of the centre, degrees.
        radius_m: Radius of the site, metres.
    """

    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class MachineSpec:
    """One simulated machine, as it is registered with the backend.

    Attributes:
        machine_id: Identity on the wire (`machines/{machine_id}/telemetry`).
        model: The simulator's kind of machine; registered as the machine class, with the
            kind's designation (`ModelSpec.designation`) as the model.
        customer_id: Owning customer.
        site: Site the machine stays in.
    """

    machine_id: str
    model: ModelName
    customer_id: str
    site: Site

    @property
    def topic(self) -> str:
        """The MQTT topic this machine publishes its telemetry to."""
        return f"machines/{self.machine_id}/telemetry"

    @property
    def machine_class(self) -> str:
        """The machine class it registers with: its kind."""
        return self.model

    @property
    def designation(self) -> str:
        """The model designation it registers with."""
        return MODEL_SPECS[self.model].designation

    def registration_body(self) -> dict[str, object]:
        """The JSON body of `POST /v1/machines` for this machine."""
        site = {"lat": self.site.lat, "lon": self.site.lon, "radius_m": self.site.radius_m}
        return {
            "machine_id": self.machine_id,
            "model": self.designation,
            "machine_class": self.machine_class,
            "customer_id": self.customer_id,
            "oem": "SANY",
            "fuel_tank_l": MODEL_SPECS[self.model].tank_l,
            "site": site,
        }


def make_fleet(
    count: int,
    *,
    models: Sequence[ModelName] = MODELS,
    id_prefix: str = "SIM",
    customer_prefix: str = "CUST",
    machines_per_customer: int = 10,
    centre_lat: float = 31.2,
    centre_lon: float = 121.5,
    spread_km: float = 30.0,
    seed: int = 0,
) -> tuple[MachineSpec, ...]:
    """A roster of `count` machines with ids, customers and sites.

    Models are assigned round-robin. Ids number machines across the whole fleet
    (`SIM-EX-0001`, `SIM-PT-0002`, `SIM-CR-0003`, ...); customers `CUST-001`, ... each own about
    `machines_per_customer` machines, spread round-robin. Each machine gets its own site, placed
    uniformly within `spread_km` of the centre, with a radius of 80-120 % of its model's.

    Args:
        count: Number of machines.
        models: Models to cycle through.
        id_prefix: First part of every machine id; tests pass a unique one.
        customer_prefix: First part of every customer id.
        machines_per_customer: Average number of machines per customer.
        centre_lat: Latitude around which sites are placed.
        centre_lon: Longitude around which sites are placed.
        spread_km: Greatest distance of a site centre from the centre.
        seed: Seed for site placement.

    Returns:
        The machines, in id order.

    Raises:
        ValueError: A count, model list or spread that makes no sense.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    if not models or any(m not in MODEL_SPECS for m in models):
        raise ValueError(f"models must be a non-empty list of {', '.join(MODELS)}")
    if machines_per_customer < 1 or spread_km < 0:
        raise ValueError("machines_per_customer must be >= 1 and spread_km >= 0")
    rng = np.random.default_rng(seed)
    distance_m = np.sqrt(rng.uniform(0.0, 1.0, count)) * spread_km * 1000.0
    bearing = rng.uniform(0.0, 2 * math.pi, count)
    radius_scale = rng.uniform(0.8, 1.2, count)
    m_per_deg_lat = 111_320.0
    m_per_deg_lon = m_per_deg_lat * math.cos(math.radians(centre_lat))
    customers = max(1, math.ceil(count / machines_per_customer))
    width = max(4, len(str(count)))
    fleet = []
    for i in range(count):
        model = models[i % len(models)]
        spec = MODEL_SPECS[model]
        site = Site(
            lat=round(centre_lat + distance_m[i] * math.sin(bearing[i]) / m_per_deg_lat, 6),
            lon=round(centre_lon + distance_m[i] * math.cos(bearing[i]) / m_per_deg_lon, 6),
            radius_m=round(spec.site_radius_m * float(radius_scale[i]), 1),
        )
        fleet.append(
            MachineSpec(
                machine_id=f"{id_prefix}-{spec.code}-{i + 1:0{width}d}",
                model=model,
                customer_id=f"{customer_prefix}-{i % customers + 1:03d}",
                site=site,
            )
        )
    return tuple(fleet)
