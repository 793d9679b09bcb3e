"""HTTP bodies of the alarm queue: alarms, their diagnosis and the signal window around them.

Staff, and the engineer sent to an alarm, see who handled it (`acknowledged_by`, `resolved_by`,
`support_line`); a customer sees its own alarms without them. Pages and details that answer both
carry `view` (`staff` or `customer`), the discriminator of the `oneOf` the OpenAPI documents.
Notes and the audit trail are staff-only routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from diagnosis.knowledge import Diagnosis
from diagnosis.limits import SignalLimit
from telematics.api.schemas import BodyIn, ReadingOut
from telematics.store.alarms import Alarm


class DeviationOut(BaseModel):
    """A signal the anomaly model found far from normal, as a z-score."""

    signal: str
    z: float


class AlarmCustomerOut(BaseModel):
    """One alarm episode as its customer sees it: what, when and how it was resolved, without
    who in the control centre handled it (no staff names) or at which support line.
    """

    alarm_id: int
    incident_id: int
    machine_id: str
    model: str
    customer_id: str
    fault: str
    state: str = Field(description="open or cleared")
    severity: str
    title: str
    signal: str | None
    spn: int | None
    fmi: int | None
    raised_at: datetime
    last_seen_at: datetime
    cleared_at: datetime | None
    readings: int = Field(description="Readings (or model windows) that met the condition")
    first_value: float | None
    last_value: float | None
    worst_value: float | None
    occurrences: int | None
    detail: str
    deviations: list[DeviationOut]
    acknowledged_at: datetime | None
    confirmed_fault: str | None = Field(
        description="What an expert confirmed or corrected the fault to"
    )
    resolution: str | None = Field(description="remote, dispatched or no_fault, once resolved")
    resolved_at: datetime | None

    @classmethod
    def of(cls, alarm: Alarm) -> AlarmCustomerOut:
        """From the store's value."""
        return cls(**_customer_fields(alarm))


def _customer_fields(alarm: Alarm) -> dict[str, Any]:
    return {
        "alarm_id": alarm.alarm_id,
        "incident_id": alarm.incident_id,
        "machine_id": alarm.machine_id,
        "model": alarm.model,
        "customer_id": alarm.customer_id,
        "fault": alarm.fault,
        "state": alarm.state,
        "severity": alarm.severity.value,
        "title": alarm.title,
        "signal": alarm.signal,
        "spn": alarm.spn,
        "fmi": alarm.fmi,
        "raised_at": alarm.raised_at,
        "last_seen_at": alarm.last_seen_at,
        "cleared_at": alarm.cleared_at,
        "readings": alarm.readings,
        "first_value": alarm.first_value,
        "last_value": alarm.last_value,
        "worst_value": alarm.worst_value,
        "occurrences": alarm.occurrences,
        "detail": alarm.detail,
        "deviations": [DeviationOut(signal=s, z=z) for s, z in alarm.deviations],
        "acknowledged_at": alarm.acknowledged_at,
        "confirmed_fault": alarm.confirmed_fault,
        "resolution": alarm.resolution,
        "resolved_at": alarm.resolved_at,
    }


class AlarmOut(AlarmCustomerOut):
    """One alarm episode as staff (and the engineer sent to it) see it: with who handled it."""

    acknowledged_by: str | None
    resolved_by: str | None
    support_line: int = Field(description="1 first line, 2 expert, 3 R&D")
    region: str | None = Field(default=None, description="The machine's service region")

    @classmethod
    def of(cls, alarm: Alarm) -> AlarmOut:
        """From the store's value."""
        return cls(
            **_customer_fields(alarm),
            acknowledged_by=alarm.acknowledged_by,
            resolved_by=alarm.resolved_by,
            support_line=alarm.support_line,
            region=alarm.region,
        )


class AlarmPage(BaseModel):
    """A page of alarms for staff, newest first; pass `next_before` as `before` for the next."""

    view: Literal["staff"]
    alarms: list[AlarmOut]
    next_before: int | None


class AlarmCustomerPage(BaseModel):
    """A page of a customer's alarms, newest first; pass `next_before` as `before` for the next."""

    view: Literal["customer"]
    alarms: list[AlarmCustomerOut]
    next_before: int | None


AlarmPageView = Annotated[AlarmPage | AlarmCustomerPage, Field(discriminator="view")]
"""A page of alarms in the caller's role's view."""


class CauseOut(BaseModel):
    """A probable cause and how likely it is."""

    cause: str
    likelihood: float


class PartOut(BaseModel):
    """A part a repair may need."""

    part_no: str
    name: str
    quantity: int


class DiagnosisOut(BaseModel):
    """The preliminary diagnosis of a fault, from the knowledge base."""

    fault: str
    title: str
    severity: str
    summary: str
    causes: list[CauseOut]
    remote_steps: list[str]
    remote_fixable: bool
    parts: list[PartOut]
    skills: list[str]
    signals: list[str]
    lang: str = Field(default="en", description="Language of the texts: en or zh-CN")
    skill_names: list[str] = Field(default_factory=list, description="Each skill, described")

    @classmethod
    def of(cls, d: Diagnosis) -> DiagnosisOut:
        """From the knowledge base's value."""
        return cls(
            fault=d.fault,
            title=d.title,
            severity=d.severity.value,
            summary=d.summary,
            causes=[CauseOut(cause=c.text, likelihood=c.likelihood) for c in d.causes],
            remote_steps=list(d.remote_steps),
            remote_fixable=d.remote_fixable,
            parts=[PartOut(part_no=p.part_no, name=p.name, quantity=p.quantity) for p in d.parts],
            skills=list(d.skills),
            signals=list(d.signals),
            lang=d.lang,
            skill_names=list(d.skill_names),
        )


class LimitOut(BaseModel):
    """A rule's limit on a signal, from the rule book of the alarm's machine: a flat `value`,
    or a curve (`xs` on signal `over`, `ys` on this one; linear between points, flat beyond).
    """

    signal: str
    fault: str = Field(description="The rule (fault code) that judges by it")
    edge: Literal["raise", "clear"]
    side: Literal["above", "below"] = Field(description="Where the faulty values lie")
    value: float | None
    over: str | None
    xs: list[float]
    ys: list[float]
    condition: str = Field(description="'' always, engine_running, or high_load")

    @classmethod
    def of(cls, limit: SignalLimit) -> LimitOut:
        """From the rule book's value."""
        return cls(
            signal=limit.signal, fault=limit.fault, edge=limit.edge.value,
            side=limit.side.value, value=limit.value, over=limit.over, xs=list(limit.xs),
            ys=list(limit.ys), condition=limit.condition,
        )  # fmt: skip


class AlarmDetailOut(BaseModel):
    """An alarm with its diagnosis and the machine's readings around it, for staff and for the
    engineer whose order it is behind.
    """

    view: Literal["staff"]
    alarm: AlarmOut
    diagnosis: DiagnosisOut
    window_start: datetime
    window_end: datetime
    readings: list[ReadingOut]
    related: list[AlarmOut] = Field(description="Other alarms of the same incident")
    limits: list[LimitOut] = Field(
        default_factory=list, description="The rule book's limits on the machine's signals"
    )


class AlarmCustomerDetailOut(BaseModel):
    """An alarm of the customer's own machine with its diagnosis and the readings around it."""

    view: Literal["customer"]
    alarm: AlarmCustomerOut
    diagnosis: DiagnosisOut
    window_start: datetime
    window_end: datetime
    readings: list[ReadingOut]
    related: list[AlarmCustomerOut] = Field(description="Other alarms of the same incident")
    limits: list[LimitOut] = Field(
        default_factory=list, description="The rule book's limits on the machine's signals"
    )


AlarmDetailView = Annotated[AlarmDetailOut | AlarmCustomerDetailOut, Field(discriminator="view")]
"""An alarm's detail in the caller's role's view."""


class AckIn(BodyIn):
    """Acknowledge an alarm. The caller is the acknowledger; `by` names someone they act for."""

    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        examples=["expert-li"],
        description="On whose behalf: recorded beside the caller in the trail, never instead",
    )


class ConfirmIn(BodyIn):
    """Confirm the diagnosis, or correct it by naming the right fault code."""

    fault: str | None = Field(
        default=None, pattern=r"^[a-z0-9_]{1,64}$", description="Corrected fault code, if wrong"
    )
    note: str = Field(default="", max_length=4000)


class NoteIn(BodyIn):
    """A note on an alarm."""

    text: str = Field(min_length=1, max_length=4000)


class ResolveIn(BodyIn):
    """Close an alarm without a field visit."""

    resolution: Literal["remote", "no_fault"] = "remote"
    steps: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        default_factory=list, description="What was done with the customer, in order"
    )
    note: str = Field(default="", max_length=4000)


class EscalateIn(BodyIn):
    """Hand an alarm to a higher support line."""

    to_line: Literal[2, 3] = Field(description="2 expert, 3 R&D")
    note: str = Field(default="", max_length=4000)


class AlarmEventOut(BaseModel):
    """One action on an alarm."""

    event_id: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]
