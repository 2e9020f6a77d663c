"""The billing mirror's handlers: each event's object written into its table, stale-protected,
plus the notifications the change calls for, all in the worker's transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from worker.mirror import queries, shapes, stripe_api, ties
from worker.mirror.notifications import notify, release
from worker.registry import Event, Tx, also_thin, handles

log = structlog.get_logger(__name__)

Row = dict[str, Any]


def _source(event: Event, kind: str) -> Row:
    """The event's snapshot: its `created`, id, rank within the second (worker.mirror.ties) and
    Connect account. A thin event's object was read from Stripe: stamped as a read."""
    if event.read_at is not None:
        return _read(event, event.read_at)
    rank = ties.of_event(kind, event.type, event.id, event.object, event.previous_attributes)
    return {
        "source_event_created": event.created,
        "source_event_id": event.id,
        "source_rank": rank,
        "account_id": event.account,
    }


def _read(event: Event, at: datetime | None = None) -> Row:
    """An object read from Stripe's API (now, or `at`): stamped with the later of the read and
    the event's `created` (our clock may lag Stripe's), the microsecond in its rank (the later
    read wins)."""
    read = at or datetime.now(UTC)
    stamp = max(read.replace(microsecond=0), event.created)
    return {
        "source_event_created": stamp,
        "source_event_id": event.id,
        "source_rank": ties.of_read(read),
        "account_id": event.account,
    }


def _current(tx: Tx, event: Event, kind: str) -> tuple[Mapping[str, Any], Row]:
    """The object to write and how to stamp it: re-read from Stripe when a key is set (the
    object as of now), else the event's own snapshot."""
    obj = event.object
    if event.read_at is not None:  # a thin event's object, read from Stripe just now
        return obj, _read(event, event.read_at)
    object_id = shapes.id_of(obj.get("id"))
    if object_id and tx.services.stripe is not None:
        fetched = stripe_api.fetch(tx.services.stripe, kind, object_id, event.account)
        if fetched is not None:
            return fetched, _read(event)
    return obj, _source(event, kind)


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
    tx.execute(queries.UPSERT_CUSTOMER, {**row, **_source(event, "customer")})


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
    if tx.execute(queries.UPSERT_SUBSCRIPTION, {**row, **source}).fetchone() is None:
        tx.execute(queries.FILL_SUBSCRIPTION_LINKS, row)
    customer_id = row["customer_id"]
    if event.type == "customer.subscription.deleted":
        notify(
            tx,
            event,
            "subscription_canceled",
            customer_id,
            {"subscription": row["id"], "ended_at": _iso(row["ended_at"] or row["canceled_at"])},
        )
    elif (
        event.type == "customer.subscription.trial_will_end"
        and event.object.get("status") == "trialing"
    ):
        # Decided by the event alone, whatever the order; delivery skips it if the trial has
        # ended since.
        notify(
            tx,
            event,
            "trial_ending",
            customer_id,
            {"subscription": row["id"], "trial_end": _iso(row["trial_end"])},
        )


# The invoice events that notify, and so read the row back after the upsert. Each notifies
# whatever the delivery order; delivery skips a failure notice whose invoice is paid since.
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
    if tx.execute(queries.UPSERT_INVOICE, {**row, **source}).fetchone() is None:
        tx.execute(queries.FILL_INVOICE_LINKS, row)
    if event.type not in _INVOICE_NOTICES:
        return
    if event.type == "invoice.payment_failed":
        current = _record_failure(tx, event, row["id"])
    else:
        current = tx.execute(queries.INVOICE_BY_ID, {"id": row["id"]}).fetchone()
    assert current is not None
    payload = {
        "invoice": row["id"],
        "subscription": current["subscription_id"],
        "amount_due": row["amount_due"],
        "currency": row["currency"],
    }
    if event.type == "invoice.paid":
        payload.update(amount_paid=row["amount_paid"], amount_due=None)
        notify(tx, event, "payment_succeeded", row["customer_id"], payload)
    elif event.type == "invoice.payment_failed":
        grace_until = current["grace_until"] if current["subscription_id"] else None
        payload.update(
            grace_until=_iso(grace_until), hosted_invoice_url=current["hosted_invoice_url"]
        )
        notify(tx, event, "payment_failed", row["customer_id"], payload)
    elif event.type == "invoice.payment_action_required":
        payload.update(hosted_invoice_url=current["hosted_invoice_url"])
        notify(tx, event, "payment_action_required", row["customer_id"], payload)


def _record_failure(tx: Tx, event: Event, invoice_id: str) -> Row | None:
    """Record the failed payment; the grace end counts from the earliest one. If this one is
    earlier than those recorded, their unsent notices get the earlier grace end too."""
    grace = timedelta(days=tx.settings.grace_period_days)
    current = tx.execute(
        queries.RECORD_PAYMENT_FAILURE,
        {"id": invoice_id, "failed_at": event.created, "grace_until": event.created + grace},
    ).fetchone()
    if current is not None and current["subscription_id"]:
        before, now = current["grace_before"], current["grace_until"]
        if before is not None and now < before:
            tx.execute(queries.REGRACE_FAILURE_NOTICES, {"invoice": invoice_id, "grace": _iso(now)})
    return current


@handles(
    "charge.succeeded", "charge.failed", "charge.captured", "charge.refunded", "charge.updated"
)
def charge_changed(tx: Tx, event: Event) -> None:
    row = shapes.charge(event.object)
    if not row["id"]:
        return _skip(event, "charges")
    customer_id = row["customer_id"]
    with _charge_locked(tx, row["id"] if customer_id else None):
        cur = tx.execute(queries.UPSERT_CHARGE_AND_LINK, {**row, **_source(event, "charge")})
    linked = cur.fetchone()
    if linked is not None:
        release(tx, linked["released"])
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
        cur = tx.execute(queries.UPSERT_DISPUTE, {**row, **_source(event, "dispute")})
    written = cur.fetchone()
    if event.type == "charge.dispute.created":
        customer_id = written["customer_id"] if written else None
        awaits = None
        if customer_id is None and row["charge_id"]:
            found = tx.execute(queries.CUSTOMER_OF_CHARGE, {"id": row["charge_id"]}).fetchone()
            if found is None:
                found = _charge_from_stripe(tx, event, row["charge_id"])
            # A charge not seen yet: writing it fills the customer in (see UPSERT_CHARGE_AND_LINK).
            customer_id = found["customer_id"] if found else None
            awaits = None if found else row["charge_id"]
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
            awaits_charge=awaits,
        )


def _charge_from_stripe(tx: Tx, event: Event, charge_id: str) -> Row | None:
    """With STRIPE_API_KEY, the charge the mirror has not seen, read and written (with its
    links); None without a key or when Stripe has no such charge."""
    fetched = stripe_api.fetch(tx.services.stripe, "charge", charge_id)
    if fetched is None:
        return None
    row = shapes.charge(fetched)
    tx.execute(queries.UPSERT_CHARGE_AND_LINK, {**row, **_read(event)})
    return {"customer_id": row["customer_id"]}


@handles("refund.created", "refund.updated", "charge.refund.updated")
def refund_changed(tx: Tx, event: Event) -> None:
    row = shapes.refund(event.object)
    if not row["id"]:
        return _skip(event, "refunds")
    with _charge_locked(tx, row["charge_id"]):
        tx.execute(queries.UPSERT_REFUND, {**row, **_source(event, "refund")})


@handles("checkout.session.completed")
def checkout_completed(tx: Tx, event: Event) -> None:
    row = shapes.checkout_session(event.object)
    if not row["id"]:
        return _skip(event, "checkout_sessions")
    tx.execute(queries.UPSERT_CHECKOUT_SESSION, {**row, **_source(event, "checkout_session")})


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
