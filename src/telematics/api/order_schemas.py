"""HTTP bodies of service orders, one view per role.

Staff (admin, expert) see the whole order: the plan with the ranking that explains why this
engineer and not the others, the reservations and the audit trail's details. The assigned
engineer sees their own route (stops, distances, ETA, the pickup warehouse) but not who else was
considered, nor the notes in the trail. A customer sees the order's progress and ETA, the parts
the job needs and used: no engineer ids, no ranking, no notes, no stock locations, no staff
names. Each view carries `view` (`staff`, `engineer`, `customer`), the discriminator of the
`oneOf` the OpenAPI documents for routes that answer more than one role.

What a role may see is decided here, from the caller's role alone; which orders it may see is
the routers'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from dispatch.needs import PartNeed
from telematics.store.orders import OrderEventRow, StoredOrder
from telematics.store.tokens import Principal, Role
from telematics.store.tracking import Tracking


class PartOut(BaseModel):
    """A part and how many."""

    part_no: str
    quantity: int


def _parts(parts: tuple[PartNeed, ...]) -> list[PartOut]:
    return [PartOut(part_no=p.part_no, quantity=p.quantity) for p in parts]


class TrackingOut(BaseModel):
    """The engineer's last reported position and what it means for the site."""

    engineer_id: str
    at: datetime | None = Field(description="When the position was reported; None: never")
    lat: float | None
    lon: float | None
    distance_km: float | None = Field(description="Road km from there to the site")
    eta: datetime | None = Field(description="Arrival recomputed from there, while on the way")
    arrived_off_site: bool | None = Field(
        description="The arrival was reported far from the site; None before an arrival"
    )
    arrival_distance_m: float | None

    @classmethod
    def of(cls, t: Tracking | None) -> TrackingOut | None:
        """From the store's value."""
        if t is None:
            return None
        return cls(
            engineer_id=t.engineer_id, at=t.at, lat=t.lat, lon=t.lon, distance_km=t.distance_km,
            eta=t.eta, arrived_off_site=t.arrived_off_site,
            arrival_distance_m=t.arrival_distance_m,
        )  # fmt: skip


class _OrderJob(BaseModel):
    """What staff and the assigned engineer both see of an order: the job, the site, the parts."""

    order_id: int
    alarm_id: int | None
    machine_id: str
    customer_id: str
    state: str
    severity: str
    fault: str | None
    skills: list[str]
    parts: list[PartOut]
    engineer_id: str | None
    site_lat: float
    site_lon: float
    eta: datetime | None
    reserved: list[PartOut] = Field(description="Parts held for the job at the route's source")
    consumed: list[PartOut]
    created_at: datetime
    updated_at: datetime
    version: int
    tracking: TrackingOut | None = Field(
        default=None, description="Live position, distance and ETA (order reads only)"
    )


def _job(s: StoredOrder) -> dict[str, Any]:
    o = s.order
    return {
        "order_id": s.order_id,
        "alarm_id": s.alarm_id,
        "machine_id": s.machine_id,
        "customer_id": s.customer_id,
        "state": o.state.value,
        "severity": o.severity.value,
        "fault": s.fault,
        "skills": list(s.skills),
        "parts": _parts(o.parts),
        "engineer_id": o.engineer_id,
        "site_lat": s.site_lat,
        "site_lon": s.site_lon,
        "eta": s.eta,
        "reserved": _parts(o.reserved),
        "consumed": _parts(o.consumed),
        "created_at": o.created_at,
        "updated_at": o.updated_at,
        "version": o.version,
    }


class OrderOut(_OrderJob):
    """A service order as staff see it: route plan, ETA and why this engineer."""

    view: Literal["staff"]
    plan: dict[str, Any] | None = Field(description="Route, distances, ETA and why this engineer")

    @classmethod
    def of(cls, s: StoredOrder, tracking: Tracking | None = None) -> OrderOut:
        """From the store's value."""
        return cls(view="staff", plan=s.plan, tracking=TrackingOut.of(tracking), **_job(s))


class RouteStopOut(BaseModel):
    """A stop on the engineer's route: the pickup warehouse, then the site."""

    kind: Literal["warehouse", "site"]
    place_id: str = Field(description="The warehouse id, or the order id for the site")
    lat: float
    lon: float
    distance_km: float = Field(description="Road kilometres from the start to this stop")
    arrive_min: float = Field(description="Minutes from dispatch to arrival here")


class RouteOut(BaseModel):
    """The engineer's own route for an order (nobody else's)."""

    pickup_warehouse_id: str | None = Field(description="Where to collect parts; None: the van")
    stops: list[RouteStopOut]
    distance_km: float
    detour_km: float
    eta_min: float

    @classmethod
    def of_plan(cls, plan: dict[str, Any] | None) -> RouteOut | None:
        """The route part of a stored plan (`services.dispatching`), without its ranking."""
        if plan is None:
            return None
        return cls(
            pickup_warehouse_id=plan["pickup_warehouse_id"],
            stops=[
                RouteStopOut(
                    kind=stop["kind"], place_id=stop["place_id"], lat=stop["lat"],
                    lon=stop["lon"], distance_km=stop["distance_km"],
                    arrive_min=stop["arrive_min"],
                )
                for stop in plan["route"]
            ],
            distance_km=plan["distance_km"],
            detour_km=plan["detour_km"],
            eta_min=plan["eta_min"],
        )  # fmt: skip


class OrderEngineerOut(_OrderJob):
    """A service order as its engineer sees it: the job, the site and their own route."""

    view: Literal["engineer"]
    route: RouteOut | None
    steps_tried: list[str] = Field(
        default_factory=list, description="Remote-fix steps the expert already tried (order reads)"
    )

    @classmethod
    def of(cls, s: StoredOrder, tracking: Tracking | None = None) -> OrderEngineerOut:
        """From the store's value."""
        route = RouteOut.of_plan(s.plan)
        return cls(view="engineer", route=route, tracking=TrackingOut.of(tracking), **_job(s))


class OrderCustomerOut(BaseModel):
    """A service order as the customer sees it: progress and ETA, nothing of the staff's."""

    view: Literal["customer"]
    order_id: int
    alarm_id: int | None
    machine_id: str
    state: str
    severity: str
    fault: str | None
    engineer_assigned: bool = Field(description="Whether an engineer has the order")
    eta: datetime | None
    parts: list[PartOut] = Field(description="Parts the repair is expected to need")
    consumed: list[PartOut] = Field(description="Parts used, once completed")
    created_at: datetime
    updated_at: datetime
    live_eta: datetime | None = Field(
        default=None, description="ETA recomputed from the engineer's live position"
    )
    survey_answered: bool = Field(
        default=False, description="Its satisfaction survey was answered (order reads)"
    )

    @classmethod
    def of(cls, s: StoredOrder, tracking: Tracking | None = None) -> OrderCustomerOut:
        """From the store's value."""
        o = s.order
        return cls(
            view="customer",
            order_id=s.order_id,
            alarm_id=s.alarm_id,
            machine_id=s.machine_id,
            state=o.state.value,
            severity=o.severity.value,
            fault=s.fault,
            engineer_assigned=o.engineer_id is not None,
            eta=s.eta,
            parts=_parts(o.parts),
            consumed=_parts(o.consumed),
            created_at=o.created_at,
            updated_at=o.updated_at,
            live_eta=None if tracking is None else tracking.eta,
        )


OrderView = Annotated[OrderOut | OrderEngineerOut | OrderCustomerOut, Field(discriminator="view")]
"""An order in the caller's role's view."""


def order_view(
    stored: StoredOrder, caller: Principal, tracking: Tracking | None = None
) -> OrderView:
    """The order as `caller`'s role may see it (a customer sees no position, only the ETA)."""
    if caller.role is Role.CUSTOMER:
        return OrderCustomerOut.of(stored, tracking)
    if caller.role is Role.ENGINEER:
        return OrderEngineerOut.of(stored, tracking)
    return OrderOut.of(stored, tracking)


class OrderEventOut(BaseModel):
    """One entry of an order's audit trail, as staff see it: with its details."""

    view: Literal["staff"]
    event_id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    detail: dict[str, Any]


class OrderEventEngineerOut(BaseModel):
    """One entry of the audit trail, as the engineer sees it: who, what, when."""

    view: Literal["engineer"]
    event_id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str


class OrderEventCustomerOut(BaseModel):
    """One step of the order, as the customer sees it: what and when."""

    view: Literal["customer"]
    event_id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str


OrderEventView = Annotated[
    OrderEventOut | OrderEventEngineerOut | OrderEventCustomerOut, Field(discriminator="view")
]
"""An audit event in the caller's role's view."""


def event_view(e: OrderEventRow, caller: Principal) -> OrderEventView:
    """The event as `caller`'s role may see it."""
    if caller.role is Role.CUSTOMER:
        return OrderEventCustomerOut(
            view="customer",
            event_id=e.event_id,
            at=e.at,
            action=e.action,
            from_state=e.from_state,
            to_state=e.to_state,
        )
    if caller.role is Role.ENGINEER:
        return OrderEventEngineerOut(
            view="engineer",
            event_id=e.event_id,
            at=e.at,
            actor=e.actor,
            action=e.action,
            from_state=e.from_state,
            to_state=e.to_state,
        )
    return OrderEventOut(view="staff", event_id=e.event_id, at=e.at, actor=e.actor,
                         action=e.action, from_state=e.from_state, to_state=e.to_state,
                         detail=e.detail)  # fmt: skip
