"""Read Stripe objects of any API version into the mirror's columns.

Stripe moves fields between versions: a subscription's period moved onto its items
(`items.data[].current_period_end`), an invoice's subscription under
`parent.subscription_details.subscription`, its charge and payment intent into `payments`.
Every reader here accepts both the older and the current shape, and ids or expanded objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from worker.mirror import ties

Row = dict[str, Any]


def id_of(value: Any) -> str | None:
    """A field holding an id, or the expanded object with an `id`."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        inner = value.get("id")
        if isinstance(inner, str) and inner:
            return inner
    return None


def ts(value: Any) -> datetime | None:
    """A Stripe unix timestamp (seconds) as an aware datetime."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _bool(value: Any) -> bool:
    return value is True


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    """A Stripe list object (`{"data": [...]}`) or a bare list."""
    if isinstance(value, Mapping):
        value = value.get("data")
    return value if isinstance(value, list) else []


def _common(obj: Mapping[str, Any]) -> Row:
    metadata = obj.get("metadata")
    return {
        "id": id_of(obj.get("id")),
        "livemode": _bool(obj.get("livemode")),
        "metadata": Jsonb(metadata if isinstance(metadata, Mapping) else {}),
        "created": ts(obj.get("created")),
        # As read from Stripe's API; a handler writing an event's snapshot ranks it by the event.
        "source_rank": ties.of_read(),
    }


def customer(obj: Mapping[str, Any]) -> Row:
    return {
        **_common(obj),
        "email": _str(obj.get("email")),
        "name": _str(obj.get("name")),
        "currency": _str(obj.get("currency")),
        "delinquent": obj.get("delinquent") if isinstance(obj.get("delinquent"), bool) else None,
        "deleted": _bool(obj.get("deleted")),
    }


def subscription(obj: Mapping[str, Any]) -> Row:
    items = [i for i in _list(obj.get("items")) if isinstance(i, Mapping)]
    first = items[0] if items else {}
    price = _dict(first.get("price")) or _dict(first.get("plan")) or _dict(obj.get("plan"))
    # Current API versions keep the period on each item; older ones on the subscription.
    starts = [t for t in (ts(i.get("current_period_start")) for i in items) if t is not None]
    ends = [t for t in (ts(i.get("current_period_end")) for i in items) if t is not None]
    period_start = ts(obj.get("current_period_start")) or (min(starts) if starts else None)
    period_end = ts(obj.get("current_period_end")) or (max(ends) if ends else None)
    quantity = _int(obj.get("quantity"))
    if quantity is None:
        quantity = _int(first.get("quantity"))
    return {
        **_common(obj),
        "customer_id": id_of(obj.get("customer")),
        "status": _str(obj.get("status")) or "incomplete",
        "price_id": id_of(price),
        "product_id": id_of(price.get("product")),
        "quantity": quantity,
        "current_period_start": period_start,
        "current_period_end": period_end,
        "cancel_at_period_end": _bool(obj.get("cancel_at_period_end")),
        "cancel_at": ts(obj.get("cancel_at")),
        "canceled_at": ts(obj.get("canceled_at")),
        "ended_at": ts(obj.get("ended_at")),
        "trial_start": ts(obj.get("trial_start")),
        "trial_end": ts(obj.get("trial_end")),
        "latest_invoice_id": id_of(obj.get("latest_invoice")),
    }


def invoice_subscription(obj: Mapping[str, Any]) -> str | None:
    """`invoice.subscription` (older versions) or `parent.subscription_details.subscription`."""
    sub = id_of(obj.get("subscription"))
    if sub:
        return sub
    details = _dict(_dict(obj.get("parent")).get("subscription_details"))
    return id_of(details.get("subscription"))


def _invoice_payment(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(charge, payment intent): top-level on older versions, under `payments` on current ones."""
    charge, intent = id_of(obj.get("charge")), id_of(obj.get("payment_intent"))
    for entry in _list(obj.get("payments")):
        payment = _dict(_dict(entry).get("payment"))
        charge = charge or id_of(payment.get("charge"))
        intent = intent or id_of(payment.get("payment_intent"))
    return charge, intent


def invoice(obj: Mapping[str, Any]) -> Row:
    transitions = _dict(obj.get("status_transitions"))
    charge, intent = _invoice_payment(obj)
    return {
        **_common(obj),
        "customer_id": id_of(obj.get("customer")),
        "subscription_id": invoice_subscription(obj),
        "status": _str(obj.get("status")),
        "billing_reason": _str(obj.get("billing_reason")),
        "currency": _str(obj.get("currency")),
        "amount_due": _int(obj.get("amount_due")),
        "amount_paid": _int(obj.get("amount_paid")),
        "amount_remaining": _int(obj.get("amount_remaining")),
        "total": _int(obj.get("total")),
        "hosted_invoice_url": _str(obj.get("hosted_invoice_url")),
        "attempt_count": _int(obj.get("attempt_count")),
        "next_payment_attempt": ts(obj.get("next_payment_attempt")),
        "paid_at": ts(transitions.get("paid_at")),
        "charge_id": charge,
        "payment_intent_id": intent,
        "period_start": ts(obj.get("period_start")),
        "period_end": ts(obj.get("period_end")),
    }


def charge(obj: Mapping[str, Any]) -> Row:
    amount = _int(obj.get("amount"))
    refunded = _int(obj.get("amount_refunded")) or 0
    return {
        **_common(obj),
        "customer_id": id_of(obj.get("customer")),
        "payment_intent_id": id_of(obj.get("payment_intent")),
        "invoice_id": id_of(obj.get("invoice")),
        "amount": amount,
        "amount_captured": _int(obj.get("amount_captured")),
        "amount_refunded": refunded,
        "currency": _str(obj.get("currency")),
        "captured": _bool(obj.get("captured")),
        "paid": _bool(obj.get("paid")),
        "refunded": _bool(obj.get("refunded")) or (amount is not None and 0 < amount <= refunded),
        "disputed": _bool(obj.get("disputed")),
        "status": _str(obj.get("status")),
        "failure_code": _str(obj.get("failure_code")),
        "failure_message": _str(obj.get("failure_message")),
    }


def _charge_child(obj: Mapping[str, Any]) -> Row:
    """Disputes and refunds name the same fields of their charge."""
    return {
        **_common(obj),
        "charge_id": id_of(obj.get("charge")),
        "customer_id": id_of(obj.get("customer")),
        "payment_intent_id": id_of(obj.get("payment_intent")),
        "amount": _int(obj.get("amount")),
        "currency": _str(obj.get("currency")),
        "reason": _str(obj.get("reason")),
        "status": _str(obj.get("status")),
    }


def dispute(obj: Mapping[str, Any]) -> Row:
    return _charge_child(obj)


def refund(obj: Mapping[str, Any]) -> Row:
    return _charge_child(obj)


def checkout_session(obj: Mapping[str, Any]) -> Row:
    return {
        **_common(obj),
        "client_reference_id": _str(obj.get("client_reference_id")),
        "customer_id": id_of(obj.get("customer")),
        "subscription_id": id_of(obj.get("subscription")),
        "invoice_id": id_of(obj.get("invoice")),
        "payment_intent_id": id_of(obj.get("payment_intent")),
        "mode": _str(obj.get("mode")),
        "status": _str(obj.get("status")),
        "payment_status": _str(obj.get("payment_status")),
        "amount_total": _int(obj.get("amount_total")),
        "currency": _str(obj.get("currency")),
    }
