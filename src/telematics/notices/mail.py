"""E-mail delivery through SMTP, with the standard library's `smtplib` in a worker thread.

The standard library is enough for one message per notice and costs no dependency; the thread
keeps the event loop free, and every socket operation has `timeout_s` (a thread cannot be
cancelled, so the timeout is what bounds it). The message carries `Message-ID:
<notice-{id}@...>` and `X-Notice-Id`, so a mailbox can tell a resend from a new notice. Header
values are built by `email.message.EmailMessage`, which refuses line breaks in them (no header
injection through a subject). smtplib's errors become `DeliveryError` here.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from telematics.notices.errors import DeliveryError


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how e-mail is sent.

    Attributes:
        host: The SMTP server.
        port: Its port.
        sender: The From address.
        username: Login, if the server wants one.
        password: Its password.
        starttls: Upgrade the connection with STARTTLS before logging in.
        timeout_s: Bound of every socket operation.
    """

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_s: float = 10.0


def message(config: SmtpConfig, to: str, subject: str, body: str, notice_id: int) -> EmailMessage:
    """The e-mail of one notice (UTF-8, so Chinese texts arrive as written)."""
    mail = EmailMessage()
    mail["From"] = config.sender
    mail["To"] = to
    mail["Subject"] = " ".join(subject.split())
    mail["Date"] = formatdate(usegmt=True)
    domain = config.sender.rpartition("@")[2] or "localhost"
    mail["Message-ID"] = f"<notice-{notice_id}@{domain}>"
    mail["X-Notice-Id"] = str(notice_id)
    mail.set_content(body, charset="utf-8")
    return mail


def _send_sync(config: SmtpConfig, mail: EmailMessage) -> None:
    with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if config.username is not None:
            smtp.login(config.username, config.password or "")
        smtp.send_message(mail)


async def send_mail(config: SmtpConfig, mail: EmailMessage) -> None:
    """Send one message.

    Raises:
        DeliveryError: Refused by the server (permanent for a 5xx reply or refused recipient,
            retryable for a 4xx), or the server unreachable or too slow (retryable).
    """
    try:
        await asyncio.to_thread(_send_sync, config, mail)
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"recipient refused: {exc.recipients}", retryable=False) from exc
    except smtplib.SMTPResponseException as exc:
        text = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        raise DeliveryError(f"SMTP {exc.smtp_code}: {text}", retryable=exc.smtp_code < 500) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}", retryable=True) from exc
