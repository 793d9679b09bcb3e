"""The alarm queue: list alarms, read one with its diagnosis and signal window, acknowledge."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from diagnosis.events import Severity
from diagnosis.knowledge import KnowledgeBase, UnknownFaultError
from diagnosis.limits import signal_limits
from telematics.api.alarm_schemas import (
    AckIn,
    AlarmCustomerDetailOut,
    AlarmCustomerOut,
    AlarmCustomerPage,
    AlarmDetailOut,
    AlarmDetailView,
    AlarmEventOut,
    AlarmOut,
    AlarmPage,
    AlarmPageView,
    ConfirmIn,
    DiagnosisOut,
    EscalateIn,
    LimitOut,
    NoteIn,
    ResolveIn,
)
from telematics.api.context import Conn, Context, ReadConn, Staff, allow
from telematics.api.language import Lang
from telematics.api.schemas import BeforeId, Instant, PathId, ReadingOut
from telematics.base.errors import InvalidRequestError, NotFoundError
from telematics.services.alarm_needs import alarm_needs, preliminary
from telematics.store import alarms as alarm_store
from telematics.store import orders as order_store
from telematics.store import readings as readings_store
from telematics.store import registry
from telematics.store.tokens import Principal, Role

router = APIRouter(prefix="/v1/alarms", tags=["alarms"])

WINDOW_BEFORE = timedelta(minutes=10)
WINDOW_AFTER = timedelta(minutes=2)
WINDOW_MAX_READINGS = 2000

# Bodies whose every field is optional may be left out; these stand in for them.
_ACK, _CONFIRM, _RESOLVE = AckIn(), ConfirmIn(), ResolveIn()


@router.get("")
async def list_alarms(
    conn: ReadConn,
    ctx: Context,
    lang: Lang,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.CUSTOMER))],
    state: Literal["open", "cleared"] | None = None,
    severity: Severity | None = None,
    model: str | None = None,
    customer_id: str | None = None,
    region: str | None = None,
    machine_id: str | None = None,
    fault: str | None = None,
    acknowledged: bool | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    before: BeforeId = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlarmPageView:
    """Alarms newest first, filtered; `since`/`until` bound the time the alarm was raised,
    `region` is the machine's service region.

    A customer sees the alarms of its own machines only, in the customer view (no staff names).
    Titles are in the language asked for (`lang`, else `Accept-Language`: en or zh-CN).
    """
    if caller.role is Role.CUSTOMER:
        customer_id = caller.subject_id
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequestError(f"{name} needs a UTC offset")
    where = alarm_store.AlarmFilter(
        state=state,
        severity=severity,
        model=model,
        customer_id=customer_id,
        region=region,
        machine_id=machine_id,
        fault=fault,
        acknowledged=acknowledged,
        since=since,
        until=until,
    )
    found = _titled(
        ctx.knowledge,
        lang,
        await alarm_store.list_alarms(conn, where, before_id=before, limit=limit),
    )
    next_before = found[-1].alarm_id if len(found) == limit else None
    if caller.role is Role.CUSTOMER:
        return AlarmCustomerPage(
            view="customer",
            alarms=[AlarmCustomerOut.of(a) for a in found],
            next_before=next_before,
        )
    return AlarmPage(view="staff", alarms=[AlarmOut.of(a) for a in found], next_before=next_before)


def _titled(
    knowledge: KnowledgeBase | None, lang: str, alarms: list[alarm_store.Alarm]
) -> list[alarm_store.Alarm]:
    """The alarms with their titles in `lang` (stored titles are the English of their raise)."""
    if knowledge is None or lang == "en":
        return alarms
    titles: dict[str, str] = {}
    for alarm in alarms:
        if alarm.fault not in titles:
            try:
                titles[alarm.fault] = knowledge.diagnose(alarm.fault, lang).title
            except UnknownFaultError:  # a fault a later knowledge base dropped
                titles[alarm.fault] = alarm.title
    return [replace(a, title=titles[a.fault]) for a in alarms]


def _knowledge(ctx: Context) -> KnowledgeBase:
    if ctx.knowledge is None:
        raise InvalidRequestError("diagnosis is not enabled in this service")
    return ctx.knowledge


async def _visible_alarm(conn: Conn, caller: Principal, alarm_id: int) -> alarm_store.Alarm:
    """The alarm if the caller may read it: staff all, a customer those of its own machines, an
    engineer those behind an order assigned to them (dispatched up to completed).

    Raises:
        NotFoundError: No such alarm, or not the caller's to see: the two answer alike, so ids
            of others' alarms do not leak.
    """
    alarm = await alarm_store.get_alarm(conn, alarm_id)
    if caller.role is Role.CUSTOMER and alarm.customer_id != caller.subject_id:
        raise NotFoundError("alarm", str(alarm_id))
    if caller.role is Role.ENGINEER and not await order_store.engineer_serves(
        conn, caller.subject_id, alarm_id=alarm_id
    ):
        raise NotFoundError("alarm", str(alarm_id))
    return alarm


@router.get("/{alarm_id}")
async def get_alarm(
    alarm_id: PathId,
    conn: Conn,
    ctx: Context,
    lang: Lang,
    caller: Annotated[Principal, Depends(allow(Role.EXPERT, Role.ENGINEER, Role.CUSTOMER))],
) -> AlarmDetailView:
    """One alarm with its preliminary diagnosis and the machine's readings around it: from ten
    minutes before it was raised to two minutes after it cleared (or was last seen).

    Staff, and the engineer whose order the alarm is behind, get the staff view; a customer
    (its own machines only) the customer view, without staff names. The diagnosis and titles
    are in the language asked for (`lang`, else `Accept-Language`: en or zh-CN).
    """
    (alarm,) = _titled(ctx.knowledge, lang, [await _visible_alarm(conn, caller, alarm_id)])
    knowledge = _knowledge(ctx)
    try:
        diagnosis = DiagnosisOut.of(alarm_needs(knowledge, alarm, lang)[1])
    except UnknownFaultError:  # corrected to a code a later knowledge base no longer has
        diagnosis = DiagnosisOut.of(preliminary(knowledge, alarm, lang))
    start = alarm.raised_at - WINDOW_BEFORE
    end = (alarm.cleared_at or alarm.last_seen_at) + WINDOW_AFTER
    window = await readings_store.readings_between(
        conn, alarm.machine_id, start, end, WINDOW_MAX_READINGS
    )
    readings = [ReadingOut.of(r) for r in window]
    found = await alarm_store.list_alarms(
        conn, alarm_store.AlarmFilter(incident_id=alarm.incident_id), before_id=None, limit=100
    )
    related = _titled(ctx.knowledge, lang, [a for a in found if a.alarm_id != alarm.alarm_id])
    limits = await _limits(conn, ctx, alarm)
    if caller.role is Role.CUSTOMER:
        return AlarmCustomerDetailOut(
            view="customer", alarm=AlarmCustomerOut.of(alarm), diagnosis=diagnosis,
            window_start=start, window_end=end, readings=readings,
            related=[AlarmCustomerOut.of(a) for a in related], limits=limits,
        )  # fmt: skip
    return AlarmDetailOut(
        view="staff", alarm=AlarmOut.of(alarm), diagnosis=diagnosis, window_start=start,
        window_end=end, readings=readings, related=[AlarmOut.of(a) for a in related],
        limits=limits,
    )  # fmt: skip


async def _limits(conn: Conn, ctx: Context, alarm: alarm_store.Alarm) -> list[LimitOut]:
    """The limits the rule book sets on the alarm's machine's signals (none without one)."""
    if ctx.rules is None:
        return []
    machine = await registry.get_machine(conn, alarm.machine_id)
    thresholds = ctx.rules.for_machine(machine.model, machine.machine_class)
    return [LimitOut.of(limit) for limit in signal_limits(thresholds)]


@router.post("/{alarm_id}/ack")
async def acknowledge(alarm_id: PathId, conn: Conn, caller: Staff, body: AckIn = _ACK) -> AlarmOut:
    """Acknowledge an alarm: someone has seen it. Acknowledging twice keeps the first.

    The acknowledger is the caller; `by` is recorded beside them as `on_behalf_of`.
    """
    alarm = await alarm_store.acknowledge(conn, alarm_id, caller.actor, on_behalf_of=body.by)
    return AlarmOut.of(alarm)


@router.post("/{alarm_id}/confirm")
async def confirm(
    alarm_id: PathId, conn: Conn, ctx: Context, caller: Staff, body: ConfirmIn = _CONFIRM
) -> AlarmOut:
    """Confirm the preliminary diagnosis, or correct it (`fault`: a code of the knowledge base,
    or a J1939 `dtc_<spn>_<fmi>`); corrections are kept for retraining the diagnosis, and the
    alarm page and an order then follow the corrected fault.

    Confirming stores the fault the preliminary diagnosis names: for an anomaly whose broken
    relation the knowledge base maps, the mapped fault. Correcting such an alarm to
    `unexplained_anomaly` says the mapping was wrong: it is then diagnosed as unexplained.
    """
    shown = None
    if ctx.knowledge is not None:
        if body.fault is not None:
            try:
                ctx.knowledge.diagnose(body.fault)
            except (UnknownFaultError, ValueError) as exc:
                raise InvalidRequestError(
                    f"fault {body.fault!r} is not a known fault code"
                ) from exc
        alarm = await alarm_store.get_alarm(conn, alarm_id)
        try:
            shown = preliminary(ctx.knowledge, alarm).fault
        except UnknownFaultError:  # raised under a knowledge base that has since dropped it
            shown = None
    return AlarmOut.of(
        await alarm_store.confirm(conn, alarm_id, caller.actor, body.fault, body.note, shown)
    )


@router.post("/{alarm_id}/notes", status_code=201)
async def add_note(alarm_id: PathId, body: NoteIn, conn: Conn, caller: Staff) -> AlarmOut:
    """Add a note to the alarm's trail."""
    alarm = await alarm_store.get_alarm(conn, alarm_id)
    await alarm_store.record(conn, alarm_id, caller.actor, "note", {"text": body.text})
    return AlarmOut.of(alarm)


@router.post("/{alarm_id}/resolve")
async def resolve(
    alarm_id: PathId, conn: Conn, caller: Staff, body: ResolveIn = _RESOLVE
) -> AlarmOut:
    """Close the alarm without a field visit: fixed remotely (with the steps taken), or no fault
    found. Sending someone is `POST /v1/alarms/{id}/dispatch`.
    """
    return AlarmOut.of(
        await alarm_store.resolve(
            conn, alarm_id, caller.actor, body.resolution, body.steps, body.note
        )
    )


@router.post("/{alarm_id}/escalate")
async def escalate(alarm_id: PathId, body: EscalateIn, conn: Conn, caller: Staff) -> AlarmOut:
    """Hand the alarm to a higher support line: 2 (expert) or 3 (R&D)."""
    return AlarmOut.of(
        await alarm_store.escalate(conn, alarm_id, caller.actor, body.to_line, body.note)
    )


@router.get("/{alarm_id}/events")
async def events(alarm_id: PathId, conn: Conn, caller: Staff) -> list[AlarmEventOut]:
    """The alarm's audit trail: every action, who and when, oldest first."""
    await alarm_store.get_alarm(conn, alarm_id)
    return [
        AlarmEventOut(event_id=e.event_id, at=e.at, actor=e.actor, action=e.action, detail=e.detail)
        for e in await alarm_store.audit_trail(conn, alarm_id)
    ]
