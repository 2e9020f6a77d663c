"""The billing mirror's handlers: each event's object written into its table, stale-protected,
plus the notifications the change calls for, all in the worker's transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from worker.mirror import queries, shapes, stripe_api
from worker.mirror.notifications import notify
from worker.registry import Event, Tx, also_thin, handles

log = structlog.get_logger(__name__)

Row = dict[str, Any]


def _source(event: Event, created: datetime | None = None) -> Row:
    """The row's source: its event, the moment its object shows, its Connect account."""
    return {
        "source_event_created": created or event.as_of,
        "source_event_id": event.id,
        "account_id": event.account,
    }


def _current(tx: Tx, event: Event, kind: str) -> tuple[Mapping[str, Any], Row]:
    """The object to write and its snapshot time: re-read from Stripe when a key is set.

    A re-read object is as of now, so it is stamped with the later of now and the event's
    `created` (our clock may lag Stripe's); otherwise the event's own snapshot and `created`.
    """
    obj = event.object
    if event.read_at is not None:  # a thin event's object, read from Stripe just now
        return obj, _source(event)
    object_id = shapes.id_of(obj.get("id"))
    if object_id and tx.services.stripe is not None:
        fetched = stripe_api.fetch(tx.services.stripe, kind, object_id, event.account)
        if fetched is not None:
            now = datetime.now(UTC).replace(microsecond=0)
            return fetched, _source(event, max(now, event.created))
    return obj, _source(event)


@contextlib.contextmanager
def _charge_locked(tx: Tx, charge_id: str | None) -> Iterator[None]:
    """Run the write under a lock per charge, taken in the statement before it.

    A charge and the disputes and refunds naming it are events of different keys, processed in
    parallel; each links the customer to what the other wrote. Without the lock, two uncommitted
    writes miss each other and the dispute keeps no customer. With it, the second waits for the
    first to commit, and its statement (a new snapshot, READ COMMITTED) sees the first's row.
    Pipelined: one round trip."""
    if not charge_id:
        yield
        return
    with tx.conn.pipeline():
        tx.execute(queries.LOCK_CHARGE, {"charge_id": charge_id})
        yield


def _skip(event: Event, table: str) -> None:
    log.warning("mirror.object_without_id", event_type=event.type, table=table)


@handles("customer.created", "customer.updated", "customer.deleted")
def customer_changed(tx: Tx, event: Event) -> None:
    row = shapes.customer(event.object)
    if not row["id"]:
        return _skip(event, "customers")
    deleted = event.type == "customer.deleted" or row["deleted"]
    row.update(deleted=deleted, deleted_at=event.created if deleted else None)
    tx.execute(queries.UPSERT_CUSTOMER, {**row, **_source(event)})


@handles(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
)
def subscription_changed(tx: Tx, event: Event) -> None:
    obj, source = _current(tx, event, "subscription")
    row = shapes.subscription(obj)
    if not row["id"]:
        return _skip(event, "subscriptions")
    tx.execute(queries.UPSERT_SUBSCRIPTION, {**row, **source})
    customer_id = row["customer_id"]
    if event.type == "customer.subscription.deleted":
        notify(
            tx,
            event,
            "subscription_canceled",
            customer_id,
            {"subscription": row["id"], "ended_at": _iso(row["ended_at"] or row["canceled_at"])},
        )
    elif event.type == "customer.subscription.trial_will_end":
        # The row as it is now (the upsert may have skipped a stale snapshot).
        current = tx.execute(queries.SUBSCRIPTION_BY_ID, {"id": row["id"]}).fetchone()
        assert current is not None
        if current["status"] != "trialing":
            return
        notify(
            tx,
            event,
            "trial_ending",
            customer_id,
            {"subscription": row["id"], "trial_end": _iso(current["trial_end"])},
        )


# The invoice events that may notify, and so read the row back after the upsert.
_INVOICE_NOTICES = frozenset(
    ("invoice.paid", "invoice.payment_failed", "invoice.payment_action_required")
)


@handles(
    "invoice.created",
    "invoice.updated",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
def invoice_changed(tx: Tx, event: Event) -> None:
    obj, source = _current(tx, event, "invoice")
    row = shapes.invoice(obj)
    if not row["id"]:
        return _skip(event, "invoices")
    tx.execute(queries.UPSERT_INVOICE, {**row, **source})
    if event.type not in _INVOICE_NOTICES:
        return
    if event.type == "invoice.payment_failed":
        grace = timedelta(days=tx.settings.grace_period_days)
        current = tx.execute(
            queries.RECORD_PAYMENT_FAILURE,
            {"id": row["id"], "failed_at": event.created, "grace_until": event.created + grace},
        ).fetchone()
    else:
        current = tx.execute(queries.INVOICE_BY_ID, {"id": row["id"]}).fetchone()
    assert current is not None
    settled = current["status"] in ("paid", "void")
    payload = {
        "invoice": row["id"],
        "subscription": current["subscription_id"],
        "amount_due": row["amount_due"],
        "currency": row["currency"],
    }
    if event.type == "invoice.paid":
        payload.update(amount_paid=row["amount_paid"], amount_due=None)
        notify(tx, event, "payment_succeeded", row["customer_id"], payload)
    elif event.type == "invoice.payment_failed" and not settled:
        grace_until = current["grace_until"] if current["subscription_id"] else None
        payload.update(
            grace_until=_iso(grace_until), hosted_invoice_url=current["hosted_invoice_url"]
        )
        notify(tx, event, "payment_failed", row["customer_id"], payload)
    elif event.type == "invoice.payment_action_required" and not settled:
        payload.update(hosted_invoice_url=current["hosted_invoice_url"])
        notify(tx, event, "payment_action_required", row["customer_id"], payload)


@handles(
    "charge.succeeded", "charge.failed", "charge.captured", "charge.refunded", "charge.updated"
)
def charge_changed(tx: Tx, event: Event) -> None:
    row = shapes.charge(event.object)
    if not row["id"]:
        return _skip(event, "charges")
    customer_id = row["customer_id"]
    with _charge_locked(tx, row["id"] if customer_id else None):
        tx.execute(queries.UPSERT_CHARGE_AND_LINK, {**row, **_source(event)})
    if event.type == "charge.refunded":
        notify(
            tx,
            event,
            "refund_issued",
            customer_id,
            {
                "charge": row["id"],
                "amount_refunded": row["amount_refunded"],
                "currency": row["currency"],
            },
        )


@handles(
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)
def dispute_changed(tx: Tx, event: Event) -> None:
    row = shapes.dispute(event.object)
    if not row["id"]:
        return _skip(event, "disputes")
    with _charge_locked(tx, row["charge_id"]):
        cur = tx.execute(queries.UPSERT_DISPUTE, {**row, **_source(event)})
    written = cur.fetchone()
    if event.type == "charge.dispute.created":
        customer_id = written["customer_id"] if written else None
        if customer_id is None and row["charge_id"]:
            found = tx.execute(queries.CUSTOMER_OF_CHARGE, {"id": row["charge_id"]}).fetchone()
            customer_id = found["customer_id"] if found else None
        notify(
            tx,
            event,
            "dispute_opened",
            customer_id,
            {
                "dispute": row["id"],
                "charge": row["charge_id"],
                "amount": row["amount"],
                "currency": row["currency"],
                "reason": row["reason"],
            },
        )


@handles("refund.created", "refund.updated", "charge.refund.updated")
def refund_changed(tx: Tx, event: Event) -> None:
    row = shapes.refund(event.object)
    if not row["id"]:
        return _skip(event, "refunds")
    with _charge_locked(tx, row["charge_id"]):
        tx.execute(queries.UPSERT_REFUND, {**row, **_source(event)})


@handles("checkout.session.completed")
def checkout_completed(tx: Tx, event: Event) -> None:
    row = shapes.checkout_session(event.object)
    if not row["id"]:
        return _skip(event, "checkout_sessions")
    tx.execute(queries.UPSERT_CHECKOUT_SESSION, {**row, **_source(event)})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# Thin events of v1 resources (`v1.invoice.paid`, ...) are applied as their snapshots are, from
# the object read from Stripe (see `worker.thin`).
for _handler in (
    customer_changed,
    subscription_changed,
    invoice_changed,
    charge_changed,
    dispute_changed,
    refund_changed,
    checkout_completed,
):
    also_thin(_handler)
