"""The `deliver_notification` actor (queue "notifications").

Declared with `dramatiq.actor` on the broker the worker entry sets before it imports
`worker.mirror`; nothing here opens a connection at import.
"""

from __future__ import annotations

import dramatiq
import structlog

from shared.settings import Settings
from worker.mirror import notifications

log = structlog.get_logger(__name__)

_settings: Settings | None = None


def use_settings(settings: Settings) -> None:
    """The worker entry may hand its Settings over; otherwise they are read on first use."""
    global _settings
    _settings = settings


def _current_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


@dramatiq.actor(
    actor_name=notifications.ACTOR,
    queue_name=notifications.QUEUE,
    max_retries=notifications.MAX_ATTEMPTS,
    min_backoff=1_000,
    max_backoff=300_000,
)
def deliver_notification(notification_id: int) -> None:
    structlog.contextvars.bind_contextvars(notification_id=notification_id)
    try:
        notifications.deliver(_current_settings(), int(notification_id))
    finally:
        structlog.contextvars.unbind_contextvars("notification_id")
