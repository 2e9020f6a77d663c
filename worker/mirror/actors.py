"""The `deliver_notification` actor (queue "notifications"): a list of notification ids.

Declared with `dramatiq.actor` on the broker the worker entry sets before it imports
`worker.mirror`; nothing here opens a connection at import.
"""

from __future__ import annotations

import dramatiq
import structlog
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.settings import Settings
from worker import runtime
from worker.mirror import notifications

log = structlog.get_logger(__name__)

_settings: Settings | None = None


def use_settings(settings: Settings) -> None:
    """Settings to use instead of the worker runtime's (or, outside a worker, the environment's)."""
    global _settings
    _settings = settings


def _resources() -> tuple[Settings, ConnectionPool[Connection] | None]:
    """The worker's settings and pool when it runs through `worker.entry`."""
    global _settings
    try:
        current = runtime.current()
    except RuntimeError:
        if _settings is None:
            _settings = Settings.from_env()
        return _settings, None
    pool = current.processor.pool if current.processor is not None else None
    return _settings or current.settings, pool


@dramatiq.actor(
    actor_name=notifications.ACTOR,
    queue_name=notifications.QUEUE,
    max_retries=notifications.MAX_ATTEMPTS,
    min_backoff=1_000,
    max_backoff=300_000,
)
def deliver_notification(notification_ids: list[int] | int) -> None:
    # A list of ids (one message per transaction's notifications), or one id (older senders).
    if isinstance(notification_ids, list):
        ids = [int(i) for i in notification_ids]
    else:
        ids = [int(notification_ids)]
    settings, pool = _resources()
    notifications.deliver_many(settings, ids, pool)
