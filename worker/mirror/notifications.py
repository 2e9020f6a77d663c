"""The notifications outbox: written with the state change, delivered after the commit.

A handler calls `notify(tx, event, kind, ...)`: one row per (event, kind), so a duplicate or a
replay of the event never makes a second one. After the commit, the id is enqueued to the
`deliver_notification` actor (queue "notifications"); the sweeper re-enqueues rows whose message
was lost. A delivery claims the row (sets `sent_at`, committed) before it sends, so a row is never
sent twice; if the transport fails, the claim is released and the delivery retried later.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import dramatiq
import psycopg
import structlog
from dramatiq.brokers.redis import RedisBroker
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from shared.broker import make_broker
from shared.db import Connection, DatabaseUnavailable, connection
from shared.logging import redact
from shared.settings import Settings
from worker.mirror import queries
from worker.mirror.transports import Message, transport_for
from worker.registry import Event, Tx, on_sweep

log = structlog.get_logger(__name__)

QUEUE = "notifications"
ACTOR = "deliver_notification"
# After this many failed sends a row stays unsent (last_error says why) and is not retried.
MAX_ATTEMPTS = 10
# Unsent rows older than this are re-enqueued by the sweeper.
STRANDED_AFTER = timedelta(minutes=1)


class DeliveryFailed(Exception):
    """The transport failed; the row is unclaimed again and the delivery will be retried."""


_brokers: dict[tuple[str, str], RedisBroker] = {}


def notify(
    tx: Tx,
    event: Event,
    kind: str,
    customer_id: str | None,
    payload: Mapping[str, Any],
) -> int | None:
    """Add a notification in the handler's transaction; returns its id, or None if it exists."""
    row = tx.execute(
        queries.INSERT_NOTIFICATION,
        {
            "event_id": event.id,
            "kind": kind,
            "customer_id": customer_id,
            "payload": Jsonb(dict(payload)),
        },
    ).fetchone()
    if row is None:
        return None
    notification_id = int(row["id"])
    settings = tx.settings
    tx.after_commit.append(lambda: enqueue(settings, [notification_id]))
    log.info("notification.queued", notification_id=notification_id, kind=kind)
    return notification_id


def _broker(settings: Settings) -> RedisBroker:
    """A broker for these settings, built once; enqueueing needs no declared actor."""
    key = (settings.redis_url, settings.redis_namespace)
    if key not in _brokers:
        _brokers[key] = make_broker(settings)
    return _brokers[key]


def delivery_message(notification_id: int) -> dramatiq.Message[object]:
    return dramatiq.Message(
        queue_name=QUEUE, actor_name=ACTOR, args=(notification_id,), kwargs={}, options={}
    )


def enqueue(settings: Settings, notification_ids: list[int]) -> None:
    broker = _broker(settings)
    for notification_id in notification_ids:
        broker.enqueue(delivery_message(notification_id))


def deliver(
    settings: Settings, notification_id: int, pool: ConnectionPool[Connection] | None = None
) -> bool:
    """Send one notification if nobody has; returns True if this call sent (or settled) it."""
    opened = pool.connection() if pool is not None else connection(settings.database_url)
    try:
        with opened as conn:
            return _deliver(conn, settings, notification_id)
    except psycopg.Error as e:
        raise DatabaseUnavailable(" ".join(str(e).split())) from e


def _deliver(conn: Connection, settings: Settings, notification_id: int) -> bool:
    row = conn.execute(
        queries.CLAIM_NOTIFICATION, {"id": notification_id, "max_attempts": MAX_ATTEMPTS}
    ).fetchone()
    conn.commit()  # the claim is visible before anything is sent
    if row is None:
        return False
    contact = None
    if row["customer_id"]:
        contact = conn.execute(queries.CUSTOMER_CONTACT, {"id": row["customer_id"]}).fetchone()
        conn.commit()
    message = Message(
        notification_id=notification_id,
        event_id=row["event_id"],
        kind=row["kind"],
        customer_id=row["customer_id"],
        payload=row["payload"],
        to=contact["email"] if contact else None,
        name=contact["name"] if contact else None,
    )
    try:
        note = transport_for(settings).send(message)
    except Exception as e:
        # SMTP errors may quote the recipient: redacted before they are stored, logged or raised.
        error = redact(" ".join(f"{type(e).__name__}: {e}".split()))[:500]
        conn.execute(queries.RELEASE_NOTIFICATION, {"id": notification_id, "error": error})
        conn.commit()
        log.warning(
            "notification.failed",
            notification_id=notification_id,
            kind=row["kind"],
            attempts=row["attempts"],
            error=error,
        )
        raise DeliveryFailed(error) from None
    if note:
        conn.execute(queries.NOTE_DELIVERY, {"id": notification_id, "note": note})
        conn.commit()
    log.info("notification.sent", notification_id=notification_id, kind=row["kind"])
    return True


def requeue_stranded(
    settings: Settings, *, min_age: timedelta = STRANDED_AFTER, limit: int = 500
) -> list[int]:
    """Enqueue again the unsent notifications whose message may have been lost."""
    try:
        with connection(settings.database_url, autocommit=True) as conn:
            rows = conn.execute(
                queries.STRANDED_NOTIFICATIONS,
                {"max_attempts": MAX_ATTEMPTS, "min_age": min_age, "limit": limit},
            ).fetchall()
    except psycopg.Error as e:
        raise DatabaseUnavailable(" ".join(str(e).split())) from e
    ids = [int(r["id"]) for r in rows]
    if ids:
        enqueue(settings, ids)
        log.info("notification.requeued", count=len(ids))
    return ids


@on_sweep
def requeue_notifications_hook(settings: Settings) -> None:
    """Run by the sweeper on every pass."""
    requeue_stranded(settings)
