"""The notifications outbox: written with the state change, delivered after the commit.

A handler calls `notify(tx, event, kind, ...)`: one row per (event, kind), so a duplicate or a
replay of the event never makes a second one; a thin event and its snapshot twin share one
(`Event.twin_key`), whichever is processed first. After the commit, the id is enqueued to the
`deliver_notification` actor (queue "notifications"); the sweeper re-enqueues rows whose message
was lost. A delivery claims the row (sets `sent_at`, committed) before it sends, so a row is never
sent twice; if the transport fails, the claim is released and the delivery retried later.

Which notifications exist depends on the events alone, not on the order they arrive in; whether
one is still worth sending is decided when it is sent (a failure notice whose invoice has been
paid since is settled unsent, with a note). One whose customer comes from a charge the mirror has
not seen yet waits for that charge (for at most LINK_WAIT), so that it goes to the customer.
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

from shared.db import Connection, connection
from shared.errors import error_line, translate_db_error
from shared.settings import Settings
from worker.mirror import queries
from worker.mirror.transports import Message, Transport, transport_for
from worker.registry import Event, Tx, on_sweep

log = structlog.get_logger(__name__)

QUEUE = "notifications"
ACTOR = "deliver_notification"
# After this many failed sends a row stays unsent (last_error says why) and is not retried.
MAX_ATTEMPTS = 10
# Notification ids per delivery message.
PER_MESSAGE = 50
# Unsent rows older than this are re-enqueued by the sweeper.
STRANDED_AFTER = timedelta(minutes=1)
# How long delivery holds back a notification waiting for its charge (re-tried by the sweeper).
LINK_WAIT = timedelta(minutes=15)


class DeliveryFailed(Exception):
    """The transport failed; the row is unclaimed again and the delivery will be retried."""


def notify(
    tx: Tx,
    event: Event,
    kind: str,
    customer_id: str | None,
    payload: Mapping[str, Any],
    *,
    awaits_charge: str | None = None,
) -> int | None:
    """Add a notification in the handler's transaction; returns its id, or None if it exists.
    `awaits_charge`: the customer is that charge's, and the mirror has not seen it yet."""
    row = tx.execute(
        queries.INSERT_NOTIFICATION,
        {
            "event_id": event.id,
            "dedupe_key": event.twin_key,
            "kind": kind,
            "customer_id": customer_id,
            "payload": Jsonb(dict(payload)),
            "awaits_charge": awaits_charge,
        },
    ).fetchone()
    if row is None:
        return None
    notification_id = int(row["id"])
    send = tx.services.enqueue_notifications
    if send is not None:  # else the sweeper sends it once it is STRANDED_AFTER old
        tx.defer(send, notification_id)
    log.debug("notification.queued", notification_id=notification_id, kind=kind)
    return notification_id


def release(tx: Tx, notification_ids: list[int]) -> None:
    """Send, after the commit, notifications that were waiting for what this event wrote."""
    send = tx.services.enqueue_notifications
    if send is not None:
        for notification_id in notification_ids:
            tx.defer(send, notification_id)


def delivery_message(notification_ids: list[int]) -> dramatiq.Message[object]:
    return dramatiq.Message(
        queue_name=QUEUE, actor_name=ACTOR, args=(notification_ids,), kwargs={}, options={}
    )


def enqueue(broker: RedisBroker, notification_ids: list[int]) -> None:
    """One message per PER_MESSAGE ids (the actor still takes a single id, as older
    versions sent)."""
    for start in range(0, len(notification_ids), PER_MESSAGE):
        broker.enqueue(delivery_message(notification_ids[start : start + PER_MESSAGE]))


def deliver(
    settings: Settings,
    notification_id: int,
    pool: ConnectionPool[Connection] | None = None,
    transport: Transport | None = None,
) -> bool:
    """Send one notification if nobody has; returns True if this call sent (or settled) it."""
    return deliver_many(settings, [notification_id], pool, transport) == [notification_id]


def deliver_many(
    settings: Settings,
    notification_ids: list[int],
    pool: ConnectionPool[Connection] | None = None,
    transport: Transport | None = None,
) -> list[int]:
    """Send each notification nobody has sent; the ids this call sent (or settled). Raises
    DeliveryFailed after trying them all if any send failed (those are unclaimed again)."""
    opened = pool.connection() if pool is not None else connection(settings.database_url)
    transport = transport or transport_for(settings)
    sent: list[int] = []
    failed: list[str] = []
    try:
        with opened as conn:
            conn.autocommit = True  # each claim is committed before its send
            for notification_id in notification_ids:
                try:
                    if _deliver(conn, transport, notification_id):
                        sent.append(notification_id)
                except DeliveryFailed as e:
                    failed.append(str(e))
    except psycopg.Error as e:
        raise translate_db_error(e) from e
    if failed:
        raise DeliveryFailed(failed[0] if len(failed) == 1 else f"{len(failed)} sends failed")
    return sent


def _deliver(conn: Connection, transport: Transport, notification_id: int) -> bool:
    row = conn.execute(
        queries.CLAIM_NOTIFICATION,
        {"id": notification_id, "max_attempts": MAX_ATTEMPTS, "link_wait": LINK_WAIT},
    ).fetchone()
    if row is None:
        return False
    if row["moot"]:
        moot = f"not sent: {row['moot']}"
        conn.execute(queries.NOTE_DELIVERY, {"id": notification_id, "note": moot})
        log.info("notification.moot", notification_id=notification_id, kind=row["kind"])
        return True
    message = Message(
        notification_id=notification_id,
        event_id=row["event_id"],
        kind=row["kind"],
        customer_id=row["customer_id"],
        payload=row["payload"],
        to=row["email"],
        name=row["name"],
    )
    try:
        note = transport.send(message)
    except Exception as e:
        # SMTP errors may quote the recipient: redacted before they are stored, logged or raised.
        error = error_line(e)
        conn.execute(queries.RELEASE_NOTIFICATION, {"id": notification_id, "error": error})
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
    log.info("notification.sent", notification_id=notification_id, kind=row["kind"])
    return True


def requeue_stranded(
    settings: Settings,
    broker: RedisBroker,
    *,
    min_age: timedelta = STRANDED_AFTER,
    limit: int = 500,
) -> list[int]:
    """Enqueue again the unsent notifications whose message may have been lost."""
    try:
        with connection(settings.database_url, autocommit=True) as conn:
            rows = conn.execute(
                queries.STRANDED_NOTIFICATIONS,
                {"max_attempts": MAX_ATTEMPTS, "min_age": min_age, "limit": limit},
            ).fetchall()
    except psycopg.Error as e:
        raise translate_db_error(e) from e
    ids = [int(r["id"]) for r in rows]
    if ids:
        enqueue(broker, ids)
        log.info("notification.requeued", count=len(ids))
    return ids


@on_sweep
def requeue_notifications_hook(settings: Settings, broker: RedisBroker) -> None:
    """Run by the sweeper on every pass."""
    requeue_stranded(settings, broker)
