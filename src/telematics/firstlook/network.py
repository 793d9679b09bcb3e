"""The demo's service network: engineers with skills and stocked vans near the fleet's sites,
warehouses, the parts catalogue the knowledge base names, and the customers' settings.

`plan_network` is pure (the fleet and the knowledge base in, the same network out every time).
`seed_network` writes it over the HTTP API with the admin token, as an operator would, and
creates only what is missing: a restart of the demo on the same data folder seeds nothing twice,
and stock that orders have used or reserved since is left as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from diagnosis.knowledge import Diagnosis, KnowledgeBase
from simulators.machines import MachineSpec
from telematics.base.errors import TelematicsError

ENGINEER_NAMES = (
    "Zhang Wei", "Li Na", "Wang Qiang", "Liu Yang", "Chen Jie", "Zhao Lei", "Huang Min", "Zhou Tao",
)  # fmt: skip
"""One engineer for each name; engineers i and i + 4 share a skill group (two per fault)."""

SKILL_GROUPS = 4
VAN_QUANTITY = 2
CENTRAL_QUANTITY = 20
DEPOT_QUANTITY = 6
CUSTOMER_TZ = "Asia/Shanghai"
"""The simulated fleet works around Shanghai (`make_fleet`'s default centre)."""

_HOME_OFFSET_M = 1500.0
_M_PER_DEG = 111_320.0
_FMIS = range(32)


class SeedError(TelematicsError):
    """The API refused a step of the seeding.

    Attributes:
        what: The request, e.g. `POST /v1/engineers`.
        status: The HTTP status of the answer.
    """

    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(f"seeding the demo network: {what} answered {status}: {detail[:300]}")
        self.what = what
        self.status = status


@dataclass(frozen=True, slots=True)
class EngineerPlan:
    """One engineer: who, what they can do, where they start, what their van carries."""

    engineer_id: str
    name: str
    skills: tuple[str, ...]
    home_lat: float
    home_lon: float
    van: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class WarehousePlan:
    """One warehouse and what it holds."""

    warehouse_id: str
    name: str
    lat: float
    lon: float
    stock: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    """The whole service network of the demo."""

    engineers: tuple[EngineerPlan, ...]
    warehouses: tuple[WarehousePlan, ...]
    parts: tuple[tuple[str, str], ...]
    customers: tuple[str, ...]
    tz: str = CUSTOMER_TZ


@dataclass(slots=True)
class SeedReport:
    """What `seed_network` created, and what was already there, by kind."""

    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, *, new: bool) -> None:
        """Count one item of `kind`."""
        counts = self.created if new else self.existing
        counts[kind] = counts.get(kind, 0) + 1

    def summary(self) -> str:
        """One line: `engineers 8 new, parts 41 kept, ...`."""
        kinds = sorted(set(self.created) | set(self.existing))
        return ", ".join(
            f"{kind} {self.created.get(kind, 0)} new / {self.existing.get(kind, 0)} kept"
            for kind in kinds
        )


def diagnoses(knowledge: KnowledgeBase) -> tuple[Diagnosis, ...]:
    """Every diagnosis the knowledge base can give: each fault, each J1939 SPN with every FMI,
    and the generic entry of an SPN it does not know.
    """
    known = set(knowledge.spns)
    stranger = next(spn for spn in range(1, 1 << 19) if spn not in known)
    codes = [*knowledge.faults]
    codes += [f"dtc_{spn}_{fmi}" for spn in (*knowledge.spns, stranger) for fmi in _FMIS]
    return tuple(knowledge.diagnose(code) for code in codes)


def plan_network(machines: Sequence[MachineSpec], knowledge: KnowledgeBase) -> NetworkPlan:
    """The demo's network for a fleet: the same fleet and knowledge base give the same network.

    Every part number the knowledge base references is in the catalogue and in stock at the
    central warehouse; every skill set a fault needs is held by two engineers, whose vans carry
    the parts of those faults, so most dispatches drive straight to the site.
    """
    found = diagnoses(knowledge)
    parts: dict[str, str] = {}
    for d in found:
        parts.update((p.part_no, p.name) for p in d.parts)
    skill_sets = sorted({tuple(sorted(d.skills)) for d in found if d.skills})
    lats = [m.site.lat for m in machines]
    lons = [m.site.lon for m in machines]
    centre_lat, centre_lon = float(sum(lats) / len(lats)), float(sum(lons) / len(lons))
    engineers = []
    for i, name in enumerate(ENGINEER_NAMES):
        group = [s for j, s in enumerate(skill_sets) if j % SKILL_GROUPS == i % SKILL_GROUPS]
        skills = tuple(sorted({skill for s in group for skill in s}))
        kit = sorted(
            {p.part_no for d in found if d.skills and set(d.skills) <= set(skills) for p in d.parts}
        )
        # Homes next to sites spread over the fleet, so every machine has someone near.
        site = machines[(i * len(machines)) // len(ENGINEER_NAMES)].site
        lat, lon = _offset(site.lat, site.lon, _HOME_OFFSET_M, math.tau * i / len(ENGINEER_NAMES))
        engineers.append(
            EngineerPlan(
                engineer_id=f"ENG-{i + 1:02d}",
                name=name,
                skills=skills,
                home_lat=lat,
                home_lon=lon,
                van=tuple((part_no, VAN_QUANTITY) for part_no in kit),
            )
        )
    catalogue = tuple(sorted(parts.items()))
    everything = tuple((part_no, CENTRAL_QUANTITY) for part_no, _ in catalogue)
    some = tuple((part_no, DEPOT_QUANTITY) for part_no, _ in catalogue)
    warehouses = (
        WarehousePlan("WH-CENTRAL", "Central parts warehouse", centre_lat, centre_lon, everything),
        WarehousePlan("WH-NORTH", "North depot", *_offset(centre_lat, centre_lon, 25_000, 0), some),
        WarehousePlan(
            "WH-SOUTH", "South depot", *_offset(centre_lat, centre_lon, 25_000, math.pi), some
        ),
    )
    customers = tuple(sorted({m.customer_id for m in machines}))
    return NetworkPlan(tuple(engineers), warehouses, catalogue, customers)


def _offset(lat: float, lon: float, distance_m: float, bearing_rad: float) -> tuple[float, float]:
    d_lat = distance_m * math.cos(bearing_rad) / _M_PER_DEG
    d_lon = distance_m * math.sin(bearing_rad) / (_M_PER_DEG * math.cos(math.radians(lat)))
    return round(float(lat + d_lat), 6), round(float(lon + d_lon), 6)


async def seed_network(http: httpx.AsyncClient, plan: NetworkPlan) -> SeedReport:
    """Create what of `plan` the service does not have yet, over its HTTP API.

    Args:
        http: A client on the API's base URL that sends the admin's bearer token.
        plan: The network.

    Returns:
        What was created and what was kept.

    Raises:
        SeedError: The API refused a request.
        httpx.HTTPError: The API could not be reached.
    """
    report = SeedReport()
    known_parts = await _part_numbers(http)
    for part_no, name in plan.parts:
        new = part_no not in known_parts
        if new:
            await _call(http, "POST", "/v1/parts", {"part_no": part_no, "name": name})
        report.count("parts", new=new)
    known = {w["warehouse_id"] for w in await _call(http, "GET", "/v1/warehouses")}
    for w in plan.warehouses:
        new = w.warehouse_id not in known
        if new:
            body = {"warehouse_id": w.warehouse_id, "name": w.name, "lat": w.lat, "lon": w.lon}
            await _call(http, "POST", "/v1/warehouses", body)
            await _stock(http, "warehouse", w.warehouse_id, w.stock)
        report.count("warehouses", new=new)
    known = {e["engineer_id"] for e in await _call(http, "GET", "/v1/engineers")}
    for e in plan.engineers:
        new = e.engineer_id not in known
        if new:
            body = {
                "engineer_id": e.engineer_id,
                "name": e.name,
                "skills": list(e.skills),
                "home_lat": e.home_lat,
                "home_lon": e.home_lon,
                "shift_tz": plan.tz,
                "max_orders": 3,
                "speed_kmh": 45.0,
            }
            await _call(http, "POST", "/v1/engineers", body)
            await _stock(http, "van", e.engineer_id, e.van)
        report.count("engineers", new=new)
    for customer_id in plan.customers:
        path = f"/v1/customers/{customer_id}/settings"
        new = (await _call(http, "GET", path))["tz"] != plan.tz
        if new:
            await _call(http, "PUT", path, {"tz": plan.tz, "shift_hours_per_day": 10.0})
        report.count("customers", new=new)
    return report


async def _part_numbers(http: httpx.AsyncClient) -> set[str]:
    found: set[str] = set()
    after: str | None = None
    while True:
        params = {"limit": "1000", **({"after": after} if after else {})}
        page: list[dict[str, Any]] = await _call(http, "GET", "/v1/parts", params=params)
        found.update(p["part_no"] for p in page)
        if len(page) < 1000:
            return found
        after = page[-1]["part_no"]


async def _stock(
    http: httpx.AsyncClient, kind: str, location_id: str, lines: tuple[tuple[str, int], ...]
) -> None:
    if lines:
        body = [
            {"location_kind": kind, "location_id": location_id, "part_no": p, "quantity": q}
            for p, q in lines
        ]
        await _call(http, "PUT", "/v1/stock", body)


async def _call(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: object = None,
    params: dict[str, str] | None = None,
) -> Any:
    answer = await http.request(method, path, json=body, params=params)
    if answer.status_code >= 300:
        raise SeedError(f"{method} {path}", answer.status_code, answer.text)
    return answer.json()
