"""The `demo` scenario: Stripe events shaped like the corpus (API version 2020-08-27, the shapes of
stripe-ruby-mock's webhook fixtures, trimmed to the fields a billing mirror reads), with fresh
ids on every run.

Three customers:
  A  subscription created (incomplete), first invoice paid, subscription active; the renewal
     payment fails (past_due), then succeeds (active again). The `active` update of the start
     is delivered before the `created` it follows: an out-of-order delivery.
  B  pays, is refunded in full, and cancels.
  C  pays, then disputes the charge.
Three events are delivered twice (duplicates).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "2020-08-27"
PRICE = 1500


@dataclass
class Scenario:
    tag: str
    start: int
    events: list[dict[str, Any]] = field(default_factory=list)
    # Indexes into `events`, in the order they are sent (duplicates appear twice).
    deliveries: list[int] = field(default_factory=list)
    customers: dict[str, str] = field(default_factory=dict)
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.events]

    def charge_ids(self) -> list[str]:
        return sorted(
            {
                e["data"]["object"]["id"]
                for e in self.events
                if e["type"].startswith("charge.") and e["data"]["object"]["object"] == "charge"
            }
        )


class _Builder:
    def __init__(self, tag: str, start: int) -> None:
        self.s = Scenario(tag=tag, start=start)
        self.clock = start
        self.n = 0

    def id(self, prefix: str, name: str) -> str:
        return f"{prefix}_demo{self.s.tag}{name}"

    def event(
        self, event_type: str, obj: dict[str, Any], prev: dict[str, Any] | None = None
    ) -> int:
        self.clock += 1
        self.n += 1
        data: dict[str, Any] = {"object": obj}
        if prev is not None:
            data["previous_attributes"] = prev
        self.s.events.append(
            {
                "id": f"evt_demo{self.s.tag}{self.n:03d}",
                "object": "event",
                "api_version": API_VERSION,
                "created": self.clock,
                "data": data,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )
        return len(self.s.events) - 1

    def customer(self, name: str) -> dict[str, Any]:
        return {
            "id": self.id("cus", name),
            "object": "customer",
            "balance": 0,
            "created": self.clock,
            "currency": "usd",
            "delinquent": False,
            "description": f"stripe-ingest demo customer {name}",
            "email": None,
            "invoice_prefix": f"DEMO{name}",
            "livemode": False,
            "metadata": {"demo": self.s.tag},
            "name": f"Demo {name}",
        }

    def subscription(self, name: str, status: str, **extra: Any) -> dict[str, Any]:
        sub_id = self.id("sub", name)
        price = {
            "id": self.id("price", "monthly"),
            "object": "price",
            "active": True,
            "currency": "usd",
            "product": self.id("prod", "pro"),
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
            "type": "recurring",
            "unit_amount": PRICE,
        }
        period_start = self.s.start
        return {
            "id": sub_id,
            "object": "subscription",
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "collection_method": "charge_automatically",
            "created": self.s.start,
            "current_period_start": period_start,
            "current_period_end": period_start + 30 * 86400,
            "customer": self.id("cus", name),
            "ended_at": None,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": self.id("si", name),
                        "object": "subscription_item",
                        "price": price,
                        "quantity": 1,
                        "subscription": sub_id,
                    }
                ],
                "has_more": False,
            },
            "latest_invoice": None,
            "livemode": False,
            "metadata": {"demo": self.s.tag},
            "quantity": 1,
            "start_date": self.s.start,
            "status": status,
            "trial_end": None,
            "trial_start": None,
            **extra,
        }

    def invoice(
        self, name: str, number: int, status: str, paid: bool, attempts: int, charge: str | None
    ) -> dict[str, Any]:
        inv_id = self.id("in", f"{name}{number}")
        return {
            "id": inv_id,
            "object": "invoice",
            "amount_due": PRICE,
            "amount_paid": PRICE if paid else 0,
            "amount_remaining": 0 if paid else PRICE,
            "attempt_count": attempts,
            "attempted": attempts > 0,
            "billing_reason": "subscription_create" if number == 1 else "subscription_cycle",
            "charge": charge,
            "collection_method": "charge_automatically",
            "created": self.clock,
            "currency": "usd",
            "customer": self.id("cus", name),
            "hosted_invoice_url": f"https://invoice.stripe.com/i/demo/{inv_id}",
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None if paid or status == "draft" else self.clock + 3 * 86400,
            "number": f"DEMO{name}-{number:04d}",
            "paid": paid,
            "payment_intent": self.id("pi", f"{name}{number}"),
            "period_start": self.s.start,
            "period_end": self.s.start + 30 * 86400,
            "status": status,
            "status_transitions": {"paid_at": self.clock if paid else None},
            "subscription": self.id("sub", name),
            "subtotal": PRICE,
            "total": PRICE,
        }

    def charge(
        self, name: str, ref: str, status: str, invoice: str, refunded: int = 0, **extra: Any
    ) -> dict[str, Any]:
        failed = status == "failed"
        return {
            "id": self.id("ch", f"{name}{ref}"),
            "object": "charge",
            "amount": PRICE,
            "amount_captured": 0 if failed else PRICE,
            "amount_refunded": refunded,
            "captured": not failed,
            "created": self.clock,
            "currency": "usd",
            "customer": self.id("cus", name),
            "dispute": None,
            "disputed": False,
            "failure_code": "card_declined" if failed else None,
            "failure_message": "Your card was declined." if failed else None,
            "invoice": invoice,
            "livemode": False,
            "metadata": {},
            "paid": not failed,
            "payment_intent": self.id("pi", f"{name}{ref}"),
            "refunded": refunded >= PRICE,
            "status": status,
            **extra,
        }


def build(tag: str | None = None, start: int | None = None) -> Scenario:
    import time

    tag = tag or secrets.token_hex(4)
    b = _Builder(tag, start if start is not None else int(time.time()) - 600)
    s = b.s
    for name in "ABC":
        s.customers[name] = b.id("cus", name)

    # A: lifecycle with a failed renewal and its recovery.
    b.event("customer.created", b.customer("A"))
    sub_created = b.event("customer.subscription.created", b.subscription("A", "incomplete"))
    b.event("invoice.created", b.invoice("A", 1, "draft", False, 0, None))
    b.event("invoice.finalized", b.invoice("A", 1, "open", False, 0, None))
    b.event("charge.succeeded", b.charge("A", "1", "succeeded", b.id("in", "A1")))
    paid_a = b.event("invoice.paid", b.invoice("A", 1, "paid", True, 1, b.id("ch", "A1")))
    b.event("invoice.payment_succeeded", b.invoice("A", 1, "paid", True, 1, b.id("ch", "A1")))
    sub_active = b.event(
        "customer.subscription.updated",
        b.subscription("A", "active", latest_invoice=b.id("in", "A1")),
        {"status": "incomplete"},
    )
    b.event("invoice.created", b.invoice("A", 2, "draft", False, 0, None))
    b.event("invoice.finalized", b.invoice("A", 2, "open", False, 0, None))
    b.event("charge.failed", b.charge("A", "2", "failed", b.id("in", "A2")))
    b.event("invoice.payment_failed", b.invoice("A", 2, "open", False, 1, b.id("ch", "A2")))
    b.event(
        "customer.subscription.updated",
        b.subscription("A", "past_due", latest_invoice=b.id("in", "A2")),
        {"status": "active"},
    )
    b.event("charge.succeeded", b.charge("A", "3", "succeeded", b.id("in", "A2")))
    b.event("invoice.paid", b.invoice("A", 2, "paid", True, 2, b.id("ch", "A3")))
    b.event(
        "customer.subscription.updated",
        b.subscription("A", "active", latest_invoice=b.id("in", "A2")),
        {"status": "past_due"},
    )

    # B: pays, refunded in full, cancels.
    b.event("customer.created", b.customer("B"))
    b.event("customer.subscription.created", b.subscription("B", "active"))
    charge_b = b.event("charge.succeeded", b.charge("B", "1", "succeeded", b.id("in", "B1")))
    b.event("invoice.paid", b.invoice("B", 1, "paid", True, 1, b.id("ch", "B1")))
    b.event(
        "charge.refunded",
        b.charge("B", "1", "succeeded", b.id("in", "B1"), refunded=PRICE),
        {"amount_refunded": 0, "refunded": False},
    )
    canceled = b.clock + 1
    b.event(
        "customer.subscription.deleted",
        b.subscription("B", "canceled", canceled_at=canceled, ended_at=canceled),
    )

    # C: pays, then disputes.
    b.event("customer.created", b.customer("C"))
    b.event("customer.subscription.created", b.subscription("C", "active"))
    b.event("charge.succeeded", b.charge("C", "1", "succeeded", b.id("in", "C1")))
    b.event("invoice.paid", b.invoice("C", 1, "paid", True, 1, b.id("ch", "C1")))
    dispute = {
        "id": b.id("dp", "C"),
        "object": "dispute",
        "amount": PRICE,
        "charge": b.id("ch", "C1"),
        "created": b.clock + 1,
        "currency": "usd",
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": b.id("pi", "C1"),
        "reason": "fraudulent",
        "status": "needs_response",
    }
    dispute_ev = b.event("charge.dispute.created", dispute)
    b.event(
        "charge.updated",
        b.charge("C", "1", "succeeded", b.id("in", "C1"), disputed=True, dispute=b.id("dp", "C")),
        {"disputed": False, "dispute": None},
    )

    order = list(range(len(s.events)))
    # Out of order: A's `active` update arrives before the `created` it follows.
    order.remove(sub_active)
    order.insert(order.index(sub_created), sub_active)
    # Duplicates: Stripe redelivers.
    for index in (paid_a, charge_b, dispute_ev):
        order.insert(order.index(index) + 1, index)
    s.deliveries = order
    s.expected = {
        "subscriptions": {
            b.id("sub", "A"): "active",
            b.id("sub", "B"): "canceled",
            b.id("sub", "C"): "active",
        },
        "invoices": {
            b.id("in", "A1"): "paid",
            b.id("in", "A2"): "paid",
            b.id("in", "B1"): "paid",
            b.id("in", "C1"): "paid",
        },
        "disputes": {b.id("dp", "C"): "needs_response"},
    }
    return s
