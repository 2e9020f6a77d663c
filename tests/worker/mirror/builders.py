"""Stripe objects and events for the mirror's tests, built from real shapes: corpus events for
the older API versions (2020-08-27), fixtures3.json objects for the current ones."""

from __future__ import annotations

import copy
from typing import Any, Literal

from tests.support import fixtures3, load_event
from tests.worker.mirror.support import wrap

Shape = Literal["old", "current"]
OLD_VERSION = "2020-08-27"
CURRENT_VERSION = "2025-03-31.basil"
T0 = 1_700_000_000
DAY = 86_400


def _corpus_object(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = load_event(name)["data"]["object"]
    return obj


def customer(customer_id: str, *, email: str | None = None) -> dict[str, Any]:
    obj = _corpus_object("stripe-ruby-mock__customer.created__1")
    obj.update(id=customer_id, email=email, metadata={"app_user": f"u_{customer_id}"})
    return obj


def subscription(
    shape: Shape,
    sub_id: str,
    customer_id: str,
    status: str,
    *,
    period_start: int = T0,
    period_end: int = T0 + 30 * DAY,
    trial_end: int | None = None,
    price_id: str = "price_basic",
) -> dict[str, Any]:
    if shape == "old":
        obj = _corpus_object("stripe-ruby-mock__customer.subscription.created__1")
        obj.update(current_period_start=period_start, current_period_end=period_end)
        obj["plan"] = {**obj["plan"], "id": price_id}
        item = obj["items"]["data"][0]
        item["price"] = {**item["price"], "id": price_id}
        item["plan"] = {**item["plan"], "id": price_id}
    else:
        obj = copy.deepcopy(fixtures3()["subscription"])
        for key in ("current_period_start", "current_period_end", "plan", "quantity"):
            assert key not in obj  # the current shape: the period lives on the items
        item = obj["items"]["data"][0]
        item.update(current_period_start=period_start, current_period_end=period_end)
        item["price"] = {**item["price"], "id": price_id}
        item["subscription"] = sub_id
    for k in ("cancel_at", "canceled_at", "ended_at"):
        obj[k] = None
    obj["cancel_at_period_end"] = False
    obj.update(
        id=sub_id,
        customer=customer_id,
        status=status,
        trial_start=period_start if trial_end else None,
        trial_end=trial_end,
        metadata={"plan": "basic"},
        created=T0,
    )
    if status == "canceled":
        obj.update(canceled_at=period_start + DAY, ended_at=period_start + DAY)
    return obj


def invoice(
    shape: Shape,
    invoice_id: str,
    customer_id: str,
    sub_id: str | None,
    status: str,
    *,
    amount: int = 1500,
    attempt_count: int = 1,
) -> dict[str, Any]:
    paid = status == "paid"
    url = f"https://invoice.stripe.com/i/acct_test/{invoice_id}"
    if shape == "old":
        obj = _corpus_object("stripe-ruby-mock__invoice.paid__1")
        obj.update(subscription=sub_id, charge=f"ch_{invoice_id}", paid=paid)
    else:
        obj = copy.deepcopy(fixtures3()["invoice"])
        assert "subscription" not in obj or obj["subscription"] is None
        obj.pop("subscription", None)
        obj["parent"] = (
            {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"metadata": {}, "subscription": sub_id},
            }
            if sub_id
            else None
        )
        obj["payments"] = {
            "object": "list",
            "data": [
                {
                    "object": "invoice_payment",
                    "id": f"inpay_{invoice_id}",
                    "invoice": invoice_id,
                    "is_default": True,
                    "payment": {"type": "payment_intent", "payment_intent": f"pi_{invoice_id}"},
                    "status": "paid" if paid else "open",
                }
            ],
            "has_more": False,
        }
        obj["status_transitions"] = {
            "finalized_at": T0,
            "marked_uncollectible_at": None,
            "paid_at": T0 + DAY if paid else None,
            "voided_at": None,
        }
    obj.update(
        id=invoice_id,
        customer=customer_id,
        status=status,
        amount_due=amount,
        amount_paid=amount if paid else 0,
        amount_remaining=0 if paid else amount,
        attempt_count=attempt_count,
        hosted_invoice_url=url,
        metadata={},
        created=T0,
    )
    return obj


def charge(
    charge_id: str,
    customer_id: str | None,
    *,
    amount: int = 1500,
    refunded_amount: int = 0,
    created: int = T0,
    status: str = "succeeded",
) -> dict[str, Any]:
    obj = _corpus_object("stripe-sync-engine__charge_succeeded__1")
    obj.update(
        id=charge_id,
        customer=customer_id,
        amount=amount,
        amount_refunded=refunded_amount,
        refunded=refunded_amount >= amount,
        status=status,
        created=created,
        metadata={},
    )
    return obj


def dispute(dispute_id: str, charge_id: str, status: str = "needs_response") -> dict[str, Any]:
    obj = _corpus_object("stripe-sync-engine__charge_dispute_created__1")
    obj.update(id=dispute_id, charge=charge_id, status=status, metadata={})
    return obj


def refund(
    refund_id: str, charge_id: str, amount: int, status: str = "succeeded"
) -> dict[str, Any]:
    obj = _corpus_object("stripe-sync-engine__refund_created__1")
    obj.update(id=refund_id, charge=charge_id, amount=amount, status=status, metadata={})
    return obj


def event(
    event_type: str, obj: dict[str, Any], event_id: str, created: int, shape: Shape = "old"
) -> dict[str, Any]:
    version = OLD_VERSION if shape == "old" else CURRENT_VERSION
    return wrap(event_type, obj, event_id, created, api_version=version)


def lifecycle(n: int, shape: Shape, *, start: int = T0) -> list[dict[str, Any]]:
    """One customer's subscription lifecycle, in creation order (`created` strictly increasing):
    created (incomplete), invoice paid, updated (active), updated (past_due), payment failed,
    deleted."""
    cus, sub = f"cus_life{n:03d}", f"sub_life{n:03d}"
    in1, in2 = f"in_life{n:03d}a", f"in_life{n:03d}b"
    t = start + n * 100
    steps: list[tuple[str, dict[str, Any]]] = [
        ("customer.created", customer(cus)),
        ("customer.subscription.created", subscription(shape, sub, cus, "incomplete")),
        ("invoice.paid", invoice(shape, in1, cus, sub, "paid")),
        ("customer.subscription.updated", subscription(shape, sub, cus, "active")),
        ("customer.subscription.updated", subscription(shape, sub, cus, "past_due")),
        ("invoice.payment_failed", invoice(shape, in2, cus, sub, "open", attempt_count=1)),
        ("customer.subscription.deleted", subscription(shape, sub, cus, "canceled")),
    ]
    return [
        event(kind, obj, f"evt_life{n:03d}_{i}_{shape}", t + i, shape)
        for i, (kind, obj) in enumerate(steps)
    ]
