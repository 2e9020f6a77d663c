"""How a notification leaves: a log line by default, an e-mail when SMTP_URL is set.

A transport is anything with `send(message) -> str | None` (the optional string is a note kept
in `notifications.last_error`, e.g. why nothing was sent). Raise to have the delivery retried.

SMTP_URL: `smtp://[user:password@]host[:port][?from=billing@example.com&starttls=true]`, or
`smtps://...` for TLS from the first byte.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import structlog

from shared.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Message:
    notification_id: int
    event_id: str
    kind: str
    customer_id: str | None
    payload: Mapping[str, Any]
    to: str | None = None
    name: str | None = None


class Transport(Protocol):
    def send(self, message: Message) -> str | None: ...


SUBJECTS = {
    "payment_succeeded": "Payment received",
    "payment_failed": "Your payment failed",
    "payment_action_required": "Your payment needs your confirmation",
    "subscription_canceled": "Your subscription was canceled",
    "trial_ending": "Your trial ends soon",
    "dispute_opened": "A payment was disputed",
    "refund_issued": "Your refund is on its way",
}


def render(message: Message) -> tuple[str, str]:
    """Subject and plain-text body; the payload holds only ids, amounts, dates and URLs."""
    subject = SUBJECTS.get(message.kind, message.kind.replace("_", " ").capitalize())
    lines = [f"{subject}."]
    for key, value in sorted(message.payload.items()):
        if value is not None:
            lines.append(f"{key.replace('_', ' ')}: {value}")
    return subject, "\n".join(lines) + "\n"


class LogTransport:
    """Logs that a notification would be sent: ids and kind, never the address or payload."""

    def send(self, message: Message) -> str | None:
        log.info(
            "notification.delivered",
            transport="log",
            notification_id=message.notification_id,
            kind=message.kind,
            customer_id=message.customer_id,
            event_id=message.event_id,
        )
        return None


class SmtpTransport:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:password@host:port")
        query = parse_qs(parts.query)
        self.ssl = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.ssl else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.starttls = query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        self.sender = query.get("from", ["billing@localhost"])[0]
        self.timeout = timeout

    def send(self, message: Message) -> str | None:
        if not message.to:
            log.info(
                "notification.no_recipient",
                notification_id=message.notification_id,
                kind=message.kind,
            )
            return "not sent: the customer has no e-mail address"
        subject, body = render(message)
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = subject
        email["Message-ID"] = f"<notification-{message.notification_id}@stripe-ingest>"
        email.set_content(body)
        smtp_class = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        with smtp_class(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls and not self.ssl:
                smtp.starttls()
            if self.user and self.password:
                smtp.login(self.user, self.password)
            smtp.send_message(email)
        log.info(
            "notification.delivered",
            transport="smtp",
            notification_id=message.notification_id,
            kind=message.kind,
            customer_id=message.customer_id,
        )
        return None


def transport_for(settings: Settings, custom: Transport | None = None) -> Transport:
    """`custom` (registered with `worker.registry.use_transport`), else SMTP or the log."""
    if custom is not None:
        return custom
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url)
    return LogTransport()
