"""The billing mirror: customers, subscriptions, invoices, charges, disputes, refunds and
checkout sessions kept in PostgreSQL, access decisions, and a notifications outbox.

Importing this package registers its handlers and its sweep hook (re-enqueue unsent
notifications) with `worker.registry`, and declares the `deliver_notification` actor; the worker
entry sets the Dramatiq broker before importing it.
"""

from __future__ import annotations

from worker.mirror import actors, handlers, notifications

__all__ = ["actors", "handlers", "notifications"]
