"""What a notice says on the wire, and its webhook signature. Pure: no I/O library.

The document is rendered once, at fan-out, and stored with the delivery; every attempt sends the
same bytes (`body`), so a receiver deduplicating on `notice_id` sees identical notices.

Webhook signature: `X-Signature: sha256=<hex>` where hex is HMAC-SHA256, keyed with the
subscription's secret, of `<X-Timestamp>.<raw body>` (the timestamp header, a dot, the body
bytes). The timestamp is signed with the body so that a captured request cannot be replayed
later with a fresh timestamp; receivers refuse timestamps far from their clock (`verify`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from telematics.notices.kinds import Kind, Language
from telematics.notices.texts import render

SIGNATURE_PREFIX = "sha256="
DEFAULT_TOLERANCE_S = 300


def document(
    *,
    event_id: int,
    customer_id: str,
    kind: Kind,
    severity: str | None,
    subject: Mapping[str, Any],
    occurred_at: datetime,
    language: Language,
    tz: str,
) -> dict[str, Any]:
    """The notice as stored in the outbox (everything but its `notice_id`)."""
    text = render(kind, severity, subject, occurred_at, language=language, tz=tz)
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "kind": kind.value,
        "severity": severity,
        "occurred_at": occurred_at.isoformat(),
        "language": language.value,
        "title": text.title,
        "text": text.body,
        "subject": dict(subject),
    }


def body(delivery_id: int, stored: Mapping[str, Any]) -> bytes:
    """The JSON bytes sent for delivery `delivery_id`: its `notice_id`, then the document."""
    return orjson.dumps({"notice_id": delivery_id, **stored})


def sign(secret: str, timestamp: int, raw: bytes) -> str:
    """The `X-Signature` header value for `raw` sent at `timestamp` (epoch seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    raw: bytes,
    signature: str,
    *,
    now_s: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """A receiver's check: the signature matches and the timestamp is within `tolerance_s`."""
    try:
        sent_s = int(timestamp)
    except ValueError:
        return False
    if abs(now_s - sent_s) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent_s, raw), signature)
