"""Event kinds, severities and which subscription wants which event. Pure: no I/O library.

The kinds are a closed list shared with migration 011's CHECK constraint; the maintenance kinds
are inserted by the maintenance capability, the others by triggers on alarms and order events.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum


class Kind(StrEnum):
    """What happened."""

    ALARM_RAISED = "alarm.raised"
    MAINTENANCE_DUE_SOON = "maintenance.due_soon"
    MAINTENANCE_OVERDUE = "maintenance.overdue"
    ORDER_DISPATCHED = "order.dispatched"
    ORDER_ARRIVED = "order.arrived"
    ORDER_COMPLETED = "order.completed"


class Channel(StrEnum):
    """How a notice travels."""

    WEBHOOK = "webhook"
    MQTT = "mqtt"
    EMAIL = "email"


class Language(StrEnum):
    """The languages the texts are written in."""

    ZH_CN = "zh-CN"
    EN = "en"


SEVERITIES = ("info", "minor", "major", "critical")
"""Alarm severities, least severe first (the same four as `alarms.severity`)."""


def severity_rank(severity: str | None) -> int:
    """The rank of a severity, 0 for info; an event without one (maintenance) ranks as info."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def wanted(kind: str, severity: str | None, *, kinds: Collection[str], min_severity: str) -> bool:
    """Whether a subscription with filters `kinds` (empty: all) and `min_severity` wants it.

    The severity floor filters alarms only: an order's progress and a maintenance reminder are
    wanted whatever the severity of the fault behind them.
    """
    if kinds and kind not in kinds:
        return False
    if kind != Kind.ALARM_RAISED:
        return True
    return severity_rank(severity) >= severity_rank(min_severity)
