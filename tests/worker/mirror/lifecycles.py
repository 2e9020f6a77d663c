"""Realistic billing lifecycles at API 2025-03-31.basil, for the convergence tests.

Objects are Stripe's own current-shape examples (openapi fixtures3.json in the corpus) with ids,
statuses, amounts and times set; events are in Stripe's order (`created` non-decreasing, several
in one second as Stripe sends them), and only `*.updated` events carry `previous_attributes`, as
Stripe's do. Each lifecycle has its own customer and objects, so lifecycles can be mixed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from tests.support import fixtures3
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import wrap

VERSION = "2025-03-31.basil"
T0 = b.T0
DAY = b.DAY
HOUR = 3600
PERIOD = 30 * DAY
AMOUNT = 1500


def _fx(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(fixtures3()[name])
    return obj


def customer(cus: str, created: int) -> dict[str, Any]:
    obj = _fx("customer")
    obj.update(
        id=cus,
        email=f"{cus}@example.test",
        name=f"Customer {cus}",
        created=created,
        delinquent=False,
        metadata={"app_user": f"u_{cus}"},
    )
    return obj


def subscription(
    sub: str,
    cus: str,
    status: str,
    *,
    start: int = T0,
    trial_end: int | None = None,
    latest_invoice: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    period_start = trial_end if trial_end and status != "trialing" else start
    period_end = trial_end if status == "trialing" and trial_end else period_start + PERIOD
    obj = b.subscription(
        "current",
        sub,
        cus,
        status,
        period_start=period_start,
        period_end=period_end,
        trial_end=trial_end,
    )
    obj.update(
        created=start, latest_invoice=latest_invoice, trial_start=start if trial_end else None
    )
    obj.update(fields)
    return obj


def invoice(
    inv: str,
    cus: str,
    sub: str,
    status: str,
    *,
    created: int,
    attempt_count: int = 0,
    billing_reason: str = "subscription_create",
    paid_at: int | None = None,
) -> dict[str, Any]:
    obj = b.invoice("current", inv, cus, sub, status, amount=AMOUNT, attempt_count=attempt_count)
    obj.update(created=created, billing_reason=billing_reason, attempted=attempt_count > 0)
    obj["status_transitions"].update(
        finalized_at=None if status == "draft" else created,
        paid_at=paid_at if status == "paid" else None,
    )
    if status == "draft":
        obj["hosted_invoice_url"] = None  # Stripe gives a draft none
    return obj


def charge(
    ch: str,
    cus: str,
    status: str,
    *,
    created: int,
    refunded: int = 0,
    disputed: bool = False,
) -> dict[str, Any]:
    obj = _fx("charge")
    ok = status == "succeeded"
    obj.update(
        id=ch,
        customer=cus,
        status=status,
        amount=AMOUNT,
        amount_captured=AMOUNT if ok else 0,
        amount_refunded=refunded,
        captured=ok,
        paid=ok,
        refunded=refunded >= AMOUNT,
        disputed=disputed,
        created=created,
        payment_intent=f"pi_{ch}",
        failure_code=None if ok else "card_declined",
        failure_message=None if ok else "Your card was declined.",
        metadata={},
    )
    return obj


def dispute(dp: str, ch: str, status: str, *, created: int, withdrawn: int = 0) -> dict[str, Any]:
    obj = _fx("dispute")
    obj.update(
        id=dp,
        charge=ch,
        status=status,
        amount=AMOUNT,
        created=created,
        payment_intent=f"pi_{ch}",
        reason="fraudulent",
        balance_transactions=[{"id": f"txn_{dp}_{i}"} for i in range(withdrawn)],
        metadata={},
    )
    return obj


def refund(re_id: str, ch: str, amount: int, *, created: int) -> dict[str, Any]:
    obj = _fx("refund")
    for later in ("customer", "customer_account"):  # not on a basil refund: it names the charge
        obj.pop(later, None)
    obj.update(
        id=re_id,
        charge=ch,
        amount=amount,
        status="succeeded",
        created=created,
        payment_intent=f"pi_{ch}",
        metadata={},
    )
    return obj


def checkout_session(cs: str, cus: str, sub: str, inv: str, *, created: int) -> dict[str, Any]:
    obj = _fx("checkout.session")
    obj.update(
        id=cs,
        customer=cus,
        subscription=sub,
        invoice=inv,
        mode="subscription",
        status="complete",
        payment_status="paid",
        client_reference_id=f"u_{cus}",
        amount_total=AMOUNT,
        currency="usd",
        created=created,
        metadata={},
    )
    return obj


@dataclass
class Lifecycle:
    kind: str  # which story (a key of OUTCOMES)
    name: str  # the kind and a tag: copies of one story with their own ids
    customer: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def id(self, prefix: str, suffix: str = "") -> str:
        return f"{prefix}_{self.name}{suffix}"

    def add(
        self,
        event_type: str,
        obj: dict[str, Any],
        at: int,
        previous: dict[str, Any] | None = None,
    ) -> None:
        assert previous is None or event_type.endswith(".updated")
        assert not self.events or self.events[-1]["created"] <= at
        event_id = f"evt_{self.name}_{len(self.events):02d}"
        self.events.append(
            wrap(event_type, obj, event_id, at, api_version=VERSION, previous_attributes=previous)
        )

    def paid_signup(self, sub: str, inv: str, ch: str, at: int, *, checkout: bool) -> None:
        """A subscription created and paid in one second: incomplete, then active."""
        cus = self.customer
        self.add(
            "customer.subscription.created", subscription(sub, cus, "incomplete", start=at), at
        )
        if checkout:
            self.add("invoice.created", invoice(inv, cus, sub, "draft", created=at), at)
            self.add("invoice.finalized", invoice(inv, cus, sub, "open", created=at), at)
        self.add("charge.succeeded", charge(ch, cus, "succeeded", created=at), at)
        paid = invoice(inv, cus, sub, "paid", created=at, attempt_count=1, paid_at=at)
        self.add("invoice.paid", paid, at)
        if checkout:
            self.add("invoice.payment_succeeded", paid, at)
        active = subscription(sub, cus, "active", start=at, latest_invoice=inv)
        self.add("customer.subscription.updated", active, at, {"status": "incomplete"})
        if checkout:
            session = checkout_session(self.id("cs"), cus, sub, inv, created=at)
            self.add("checkout.session.completed", session, at)


def _start(kind: str, offset: int, tag: str) -> tuple[Lifecycle, int]:
    life = Lifecycle(kind, kind + tag, f"cus_{kind}{tag}")
    at = T0 + offset
    life.add("customer.created", customer(life.customer, at), at)
    return life, at + 1


def checkout(tag: str = "") -> Lifecycle:
    """A Checkout: everything from the subscription's creation to `active` in one second."""
    life, at = _start("ck", 0, tag)
    life.paid_signup(life.id("sub"), life.id("in"), life.id("ch"), at, checkout=True)
    return life


def renewal_failure_grace_recovery(tag: str = "") -> Lifecycle:
    """The renewal's payment fails (past_due, grace), fails again, then succeeds."""
    life, at = _start("rn", 10, tag)
    cus, sub, first, inv = life.customer, life.id("sub"), life.id("in", "1"), life.id("in", "2")
    life.paid_signup(sub, first, life.id("ch", "1"), at, checkout=False)
    renew = at + PERIOD
    cycle: dict[str, Any] = {"created": renew, "billing_reason": "subscription_cycle"}

    def sub_at(status: str) -> dict[str, Any]:
        return subscription(sub, cus, status, start=renew, latest_invoice=inv)

    def charge_at(n: str, status: str, t: int) -> None:
        life.add(f"charge.{status}", charge(life.id("ch", n), cus, status, created=t), t)

    life.add("customer.subscription.updated", sub_at("active"), renew, {"latest_invoice": first})
    life.add("invoice.created", invoice(inv, cus, sub, "draft", **cycle), renew)
    due = renew + HOUR
    life.add("invoice.finalized", invoice(inv, cus, sub, "open", **cycle), due)
    charge_at("2", "failed", due)
    failed = invoice(inv, cus, sub, "open", attempt_count=1, **cycle)
    life.add("invoice.payment_failed", failed, due)
    life.add("customer.subscription.updated", sub_at("past_due"), due, {"status": "active"})
    retry = due + 3 * DAY
    charge_at("3", "failed", retry)
    again = invoice(inv, cus, sub, "open", attempt_count=2, **cycle)
    life.add("invoice.payment_failed", again, retry)
    paid_at = due + 5 * DAY
    charge_at("4", "succeeded", paid_at)
    paid = invoice(inv, cus, sub, "paid", attempt_count=3, paid_at=paid_at, **cycle)
    life.add("invoice.paid", paid, paid_at)
    life.add("customer.subscription.updated", sub_at("active"), paid_at, {"status": "past_due"})
    return life


def cancel_at_period_end(tag: str = "") -> Lifecycle:
    life, at = _start("cp", 20, tag)
    cus, sub = life.customer, life.id("sub")
    life.paid_signup(sub, life.id("in"), life.id("ch"), at, checkout=False)
    asked = at + 5 * DAY
    ending = subscription(
        sub,
        cus,
        "active",
        start=at,
        latest_invoice=life.id("in"),
        cancel_at_period_end=True,
        cancel_at=at + PERIOD,
    )
    previous = {"cancel_at_period_end": False, "cancel_at": None}
    life.add("customer.subscription.updated", ending, asked, previous)
    end = at + PERIOD
    canceled = subscription(
        sub,
        cus,
        "canceled",
        start=at,
        latest_invoice=life.id("in"),
        cancel_at_period_end=True,
        cancel_at=end,
        canceled_at=asked,
        ended_at=end,
    )
    life.add("customer.subscription.deleted", canceled, end)
    return life


def refund_then_dispute_lost(tag: str = "") -> Lifecycle:
    """A partial refund, then a dispute on the same charge (keyed by the charge: no customer on
    a dispute or a basil refund), lost."""
    life, at = _start("rd", 30, tag)
    cus, ch = life.customer, life.id("ch")
    life.paid_signup(life.id("sub"), life.id("in"), ch, at, checkout=False)
    refunded_at = at + 2 * DAY
    life.add("charge.refunded", charge(ch, cus, "succeeded", created=at, refunded=500), refunded_at)
    life.add("refund.created", refund(life.id("re"), ch, 500, created=refunded_at), refunded_at)
    opened = at + 10 * DAY
    life.add(
        "charge.dispute.created",
        dispute(life.id("dp"), ch, "needs_response", created=opened),
        opened,
    )
    withdrawn = dispute(life.id("dp"), ch, "needs_response", created=opened, withdrawn=1)
    life.add("charge.dispute.funds_withdrawn", withdrawn, opened)
    disputed = charge(ch, cus, "succeeded", created=at, refunded=500, disputed=True)
    life.add("charge.updated", disputed, opened, {"disputed": False})
    review = at + 12 * DAY
    reviewing = dispute(life.id("dp"), ch, "under_review", created=opened, withdrawn=1)
    life.add("charge.dispute.updated", reviewing, review, {"status": "needs_response"})
    closed = at + 40 * DAY
    life.add(
        "charge.dispute.closed",
        dispute(life.id("dp"), ch, "lost", created=opened, withdrawn=1),
        closed,
    )
    return life


def customer_deleted(tag: str = "") -> Lifecycle:
    """Deleting the customer cancels its subscription in the same second."""
    life, at = _start("cd", 40, tag)
    cus, sub = life.customer, life.id("sub")
    life.paid_signup(sub, life.id("in"), life.id("ch"), at, checkout=False)
    gone = at + 20 * DAY
    canceled = subscription(
        sub,
        cus,
        "canceled",
        start=at,
        latest_invoice=life.id("in"),
        canceled_at=gone,
        ended_at=gone,
    )
    life.add("customer.subscription.deleted", canceled, gone)
    life.add("customer.deleted", {**customer(cus, at), "deleted": True}, gone)
    return life


def _trial_ends(life: Lifecycle, sub: str, inv: str, ch: str, at: int, *, pays: bool) -> None:
    cus = life.customer
    trial_end = at + 14 * DAY
    trialing = subscription(sub, cus, "trialing", start=at, trial_end=trial_end)
    life.add("customer.subscription.created", trialing, at)
    life.add("customer.subscription.trial_will_end", trialing, trial_end - 3 * DAY)
    cycle = {"billing_reason": "subscription_cycle"}
    life.add(
        "invoice.created", invoice(inv, cus, sub, "draft", created=trial_end, **cycle), trial_end
    )
    life.add(
        "invoice.finalized", invoice(inv, cus, sub, "open", created=trial_end, **cycle), trial_end
    )
    status = "succeeded" if pays else "failed"
    life.add(f"charge.{status}", charge(ch, cus, status, created=trial_end), trial_end)
    after = {"start": at, "trial_end": trial_end, "latest_invoice": inv}
    active = subscription(sub, cus, "active", **after)
    if pays:
        paid = invoice(
            inv, cus, sub, "paid", created=trial_end, attempt_count=1, paid_at=trial_end, **cycle
        )
        life.add("invoice.paid", paid, trial_end)
        life.add("customer.subscription.updated", active, trial_end, {"status": "trialing"})
        return
    failed = invoice(inv, cus, sub, "open", created=trial_end, attempt_count=1, **cycle)
    life.add("invoice.payment_failed", failed, trial_end)
    life.add("customer.subscription.updated", active, trial_end, {"status": "trialing"})
    past_due = subscription(sub, cus, "past_due", **after)
    life.add("customer.subscription.updated", past_due, trial_end, {"status": "active"})


def trial_ending(tag: str = "") -> Lifecycle:
    life, at = _start("tr", 50, tag)
    _trial_ends(life, life.id("sub"), life.id("in"), life.id("ch"), at, pays=True)
    return life


def trial_to_past_due(tag: str = "") -> Lifecycle:
    """The trial ends and its first payment fails: trialing, active, past_due in one second."""
    life, at = _start("tp", 60, tag)
    _trial_ends(life, life.id("sub"), life.id("in"), life.id("ch"), at, pays=False)
    return life


def all_lifecycles(tag: str = "") -> list[Lifecycle]:
    """Every story once; with `tag`, a copy whose ids (customers, objects, events) are its own."""
    return [
        checkout(tag),
        renewal_failure_grace_recovery(tag),
        cancel_at_period_end(tag),
        refund_then_dispute_lost(tag),
        customer_deleted(tag),
        trial_ending(tag),
        trial_to_past_due(tag),
    ]


# What each lifecycle ends in, as Stripe has it: (subscription status, access reason at END).
END = T0 + 90 * DAY
OUTCOMES = {
    "ck": ("active", "active"),
    "rn": ("active", "active"),
    "cp": ("canceled", "canceled"),
    "rd": ("active", "dispute_lost"),
    "cd": ("canceled", "customer_deleted"),
    "tr": ("active", "active"),
    "tp": ("past_due", "grace_expired"),
}
