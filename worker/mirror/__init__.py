"""The billing mirror: customers, subscriptions, invoices, charges, disputes, refunds and
checkout sessions kept in PostgreSQL, access decisions, and a notifications outbox.

Importing this package registers its handlers with `worker.registry` and declares the
`deliver_notification` actor; the worker entry sets the Dramatiq broker before importing it.
"""

from __future__ import annotations

from shared.settings import Settings
from worker.mirror import actors, handlers, notifications
from worker.registry import on_sweep


@on_sweep
def requeue_notifications(settings: Settings) -> None:
    """Re-enqueue unsent notifications whose message may have been lost."""
    notifications.requeue_stranded(settings)


__all__ = ["actors", "handlers", "notifications", "requeue_notifications"]
