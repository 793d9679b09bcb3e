# ruff: noqa: RUF001 - full-width punctuation is correct in the Chinese texts
"""Every notice text, in Simplified Chinese and English: the one place that owns them. Pure.

`render` turns an event (kind, severity, subject, time) into a title and a body in the
subscription's language, with times in the subscription's zone. Subject fields are read
defensively: an absent field renders as a dash, never as an error, so a notice always goes out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telematics.notices.kinds import Kind, Language

MISSING = "-"
MAX_FIELD_CHARS = 200

SEVERITY_WORDS: dict[Language, dict[str, str]] = {
    Language.EN: {"critical": "critical", "major": "major", "minor": "minor", "info": "info"},
    Language.ZH_CN: {"critical": "严重", "major": "重要", "minor": "次要", "info": "提示"},
}

# (title, body) templates per kind and language; fields in braces come from `_fields`.
TEMPLATES: dict[Kind, dict[Language, tuple[str, str]]] = {
    Kind.ALARM_RAISED: {
        Language.EN: (
            "[{severity}] {machine}: {title}",
            "Machine {machine} ({model}) raised a {severity} alarm at {occurred}: {title}.",
        ),
        Language.ZH_CN: (
            "【{severity}】{machine}：{title}",
            "设备 {machine}（{model}）于 {occurred} 发生{severity}告警：{title}。",
        ),
    },
    Kind.MAINTENANCE_DUE_SOON: {
        Language.EN: (
            "Maintenance due soon: {machine}",
            "Machine {machine}: {item} is due soon (due {due}).",
        ),
        Language.ZH_CN: (
            "即将保养：{machine}",
            "设备 {machine}：{item} 即将到期（到期 {due}）。",
        ),
    },
    Kind.MAINTENANCE_OVERDUE: {
        Language.EN: (
            "Maintenance overdue: {machine}",
            "Machine {machine}: {item} is overdue (was due {due}).",
        ),
        Language.ZH_CN: (
            "保养已逾期：{machine}",
            "设备 {machine}：{item} 已逾期（应于 {due} 完成）。",
        ),
    },
    Kind.ORDER_DISPATCHED: {
        Language.EN: (
            "Engineer on the way: {machine}",
            "Service order {order_id} for machine {machine}: engineer {engineer} is assigned, "
            "expected on site at {eta}.",
        ),
        Language.ZH_CN: (
            "工程师已派出：{machine}",
            "设备 {machine} 的服务工单 {order_id}：已指派工程师 {engineer}，预计 {eta} 到达现场。",
        ),
    },
    Kind.ORDER_ARRIVED: {
        Language.EN: (
            "Engineer on site: {machine}",
            "Service order {order_id}: engineer {engineer} arrived at machine {machine} at "
            "{occurred}.",
        ),
        Language.ZH_CN: (
            "工程师已到达：{machine}",
            "服务工单 {order_id}：工程师 {engineer} 已于 {occurred} 到达设备 {machine} 现场。",
        ),
    },
    Kind.ORDER_COMPLETED: {
        Language.EN: (
            "Service completed: {machine}",
            "Service order {order_id} for machine {machine} was completed at {occurred} by "
            "engineer {engineer}.",
        ),
        Language.ZH_CN: (
            "服务已完成：{machine}",
            "设备 {machine} 的服务工单 {order_id} 已于 {occurred} 由工程师 {engineer} 完成。",
        ),
    },
}


@dataclass(frozen=True, slots=True)
class Text:
    """A notice in words."""

    title: str
    body: str


def _clean(value: object) -> str:
    """A subject value as one line of bounded text (control characters become spaces)."""
    if value is None or value == "":
        return MISSING
    text = "".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in str(value))
    return text[:MAX_FIELD_CHARS]


def local_time(value: object, tz: str) -> str:
    """An ISO time (or a datetime) as `YYYY-MM-DD HH:MM <zone>` in `tz`; the dash when absent."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return _clean(value)
    if not isinstance(value, datetime):
        return MISSING
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def zone(tz: str) -> ZoneInfo:
    """The zone named `tz`, or UTC when there is none by that name (a notice still goes out)."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return ZoneInfo("UTC")


def _due(subject: Mapping[str, object], tz: str) -> str:
    due_at = subject.get("due_at")
    if isinstance(due_at, str) and len(due_at) == len("YYYY-MM-DD"):
        return _clean(due_at)  # a calendar date (a plan item's due date) has no zone to shift
    if due_at is not None:
        return local_time(due_at, tz)
    if subject.get("due_engine_hours") is not None:
        return f"{_clean(subject['due_engine_hours'])} h"
    return MISSING


def _fields(
    severity: str | None,
    subject: Mapping[str, object],
    occurred_at: datetime,
    language: Language,
    tz: str,
) -> dict[str, str]:
    machine = subject.get("machine_name") or subject.get("machine_id")
    engineer = subject.get("engineer_name") or subject.get("engineer_id")
    return {
        "machine": _clean(machine),
        "model": _clean(subject.get("model")),
        "title": _clean(subject.get("title") or subject.get("fault")),
        "severity": SEVERITY_WORDS[language].get(severity or "", MISSING),
        "occurred": local_time(occurred_at, tz),
        "item": _clean(subject.get("item") or subject.get("title")),
        "due": _due(subject, tz),
        "order_id": _clean(subject.get("order_id")),
        "engineer": _clean(engineer),
        "eta": local_time(subject.get("eta"), tz),
    }


def render(
    kind: Kind,
    severity: str | None,
    subject: Mapping[str, object],
    occurred_at: datetime,
    *,
    language: Language,
    tz: str = "UTC",
) -> Text:
    """The title and body of a notice of `kind` in `language`, times shown in zone `tz`."""
    title, body = TEMPLATES[kind][language]
    values = _fields(severity, subject, occurred_at, language, tz)
    return Text(title.format(**values), body.format(**values))
