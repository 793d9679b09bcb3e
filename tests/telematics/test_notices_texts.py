"""The pure parts of notices: texts in both languages, backoff, signatures, filters."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest

from telematics.notices.kinds import Kind, Language, wanted
from telematics.notices.payload import body, sign, verify
from telematics.notices.retry import RetryPolicy
from telematics.notices.texts import TEMPLATES, render

AT = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)
SUBJECTS = {
    Kind.ALARM_RAISED: {"machine_id": "SY-1", "model": "SY215C", "title": "Low oil pressure"},
    Kind.MAINTENANCE_DUE_SOON: {
        "machine_id": "SY-1",
        "item": "engine oil",
        "due_at": AT.isoformat(),
    },
    Kind.MAINTENANCE_OVERDUE: {"machine_id": "SY-1", "item": "engine oil", "due_engine_hours": 500},
    Kind.ORDER_DISPATCHED: {
        "order_id": 7,
        "machine_id": "SY-1",
        "engineer_name": "Li Wei",
        "eta": "2026-03-01T06:00:00+00:00",
    },
    Kind.ORDER_ARRIVED: {"order_id": 7, "machine_id": "SY-1", "engineer_name": "Li Wei"},
    Kind.ORDER_COMPLETED: {"order_id": 7, "machine_id": "SY-1", "engineer_name": "Li Wei"},
}


def test_every_kind_has_both_languages() -> None:
    assert set(TEMPLATES) == set(Kind)
    assert all(set(t) == set(Language) for t in TEMPLATES.values())


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("language", list(Language))
def test_each_text_names_the_machine_and_no_placeholder_is_left(
    kind: Kind, language: Language
) -> None:
    text = render(kind, "critical", SUBJECTS[kind], AT, language=language, tz="Asia/Shanghai")
    assert "SY-1" in text.title + text.body
    assert "{" not in text.title + text.body
    assert text.body != "-"


def test_times_are_shown_in_the_subscriptions_zone() -> None:
    text = render(Kind.ORDER_DISPATCHED, "major", SUBJECTS[Kind.ORDER_DISPATCHED], AT,
                  language=Language.ZH_CN, tz="Asia/Shanghai")  # fmt: skip
    assert "2026-03-01 14:00 CST" in text.body  # 06:00 UTC is 14:00 in Shanghai
    assert "Li Wei" in text.body
    assert "工程师" in text.body
    english = render(Kind.ORDER_DISPATCHED, "major", SUBJECTS[Kind.ORDER_DISPATCHED], AT,
                     language=Language.EN, tz="UTC")  # fmt: skip
    assert "2026-03-01 06:00 UTC" in english.body


def test_missing_or_hostile_subject_fields_still_render_one_line() -> None:
    text = render(Kind.ALARM_RAISED, None, {"title": "bad\r\nBcc: x", "eta": 5}, AT,
                  language=Language.EN)  # fmt: skip
    assert "\n" not in text.title
    assert "\r" not in text.title
    assert text.title.startswith("[-] -:")
    long = render(Kind.ALARM_RAISED, "info", {"machine_id": "M" * 10_000}, AT, language=Language.EN)
    assert len(long.title) < 300


def test_backoff_doubles_up_to_the_cap_with_jitter_within_half() -> None:
    policy = RetryPolicy(base_s=2, cap_s=60, max_attempts=5)
    rng = random.Random(7)
    for attempts, nominal in ((1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (40, 60)):
        delays = [policy.delay_s(attempts, rng) for _ in range(200)]
        assert all(nominal / 2 <= d <= nominal for d in delays)
        assert max(delays) - min(delays) > nominal / 4  # jittered, not constant
    assert not policy.gives_up(4)
    assert policy.gives_up(5)


def test_a_signature_binds_body_and_timestamp() -> None:
    raw = body(42, {"kind": "alarm.raised", "title": "严重"})
    now = int(time.time())
    signature = sign("k" * 16, now, raw)
    assert signature.startswith("sha256=")
    assert len(signature) == 7 + 64
    assert verify("k" * 16, str(now), raw, signature, now_s=now)
    assert not verify("k" * 16, str(now + 1), raw, signature, now_s=now)  # timestamp swapped
    assert not verify("k" * 16, str(now), raw + b" ", signature, now_s=now)  # body changed
    assert not verify("x" * 16, str(now), raw, signature, now_s=now)  # other secret
    assert not verify("k" * 16, str(now), raw, signature, now_s=now + 3600)  # replayed late
    assert not verify("k" * 16, "soon", raw, signature, now_s=now)


def test_the_severity_floor_filters_alarms_only() -> None:
    assert wanted("alarm.raised", "major", kinds=(), min_severity="major")
    assert not wanted("alarm.raised", "minor", kinds=(), min_severity="major")
    assert wanted("order.arrived", "minor", kinds=(), min_severity="critical")
    assert wanted("maintenance.overdue", None, kinds=(), min_severity="critical")
    assert not wanted("order.arrived", "minor", kinds=("alarm.raised",), min_severity="info")
