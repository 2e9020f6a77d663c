"""API versions: the older shapes (corpus, 2017 to 2020 versions) and the current ones
(fixtures3.json objects: period on subscription items, invoice.parent, invoice payments) fill the
same columns."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from shared.settings import Settings
from tests.support import fixtures3, unique_event
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply, row, wrap


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def test_current_subscription_takes_its_period_from_the_items(settings: Settings) -> None:
    obj = copy.deepcopy(fixtures3()["subscription"])
    assert "current_period_end" not in obj
    items = obj["items"]["data"]
    second = copy.deepcopy(items[0])
    second.update(
        id="si_second", current_period_start=1_700_000_000, current_period_end=1_800_000_000
    )
    items.append(second)
    apply(settings, wrap("customer.subscription.updated", obj, "evt_cur_sub", 1_721_954_100))
    found = row(settings, "subscriptions", obj["id"])
    assert found is not None
    first = items[0]
    assert found["customer_id"] == obj["customer"]
    assert found["status"] == obj["status"]
    assert found["current_period_end"] == at(max(first["current_period_end"], 1_800_000_000))
    assert found["current_period_start"] == at(min(first["current_period_start"], 1_700_000_000))
    assert (found["price_id"], found["product_id"]) == (
        first["price"]["id"],
        first["price"]["product"],
    )
    assert found["quantity"] == first["quantity"]
    assert found["cancel_at_period_end"] is obj["cancel_at_period_end"]
    assert found["trial_end"] == at(obj["trial_end"])


def test_older_subscription_takes_its_period_from_the_subscription(settings: Settings) -> None:
    event = unique_event("stripe-sync-engine__subscription_created__1", "v")
    obj = event["data"]["object"]
    apply(settings, event)
    found = row(settings, "subscriptions", obj["id"])
    assert found is not None
    assert found["current_period_end"] == at(obj["current_period_end"])
    assert found["current_period_start"] == at(obj["current_period_start"])
    assert found["price_id"] == obj["plan"]["id"]
    assert found["product_id"] == obj["plan"]["product"]


def test_current_invoice_takes_subscription_from_parent_and_payment_from_payments(
    settings: Settings,
) -> None:
    obj = b.invoice("current", "in_cur_1", "cus_cur_1", "sub_cur_1", "paid")
    assert "subscription" not in obj and "charge" not in obj
    apply(settings, b.event("invoice.paid", obj, "evt_cur_inv", b.T0 + 5, "current"))
    found = row(settings, "invoices", "in_cur_1")
    assert found is not None
    assert found["subscription_id"] == "sub_cur_1"
    assert found["payment_intent_id"] == "pi_in_cur_1"
    assert found["status"] == "paid"
    assert found["paid_at"] == at(b.T0 + b.DAY)


def test_fixtures3_invoice_as_is(settings: Settings) -> None:
    obj = copy.deepcopy(fixtures3()["invoice"])
    apply(settings, wrap("invoice.created", obj, "evt_f3_inv", 1_234_567_900))
    found = row(settings, "invoices", obj["id"])
    assert found is not None
    assert found["subscription_id"] == obj["parent"]["subscription_details"]["subscription"]
    assert (found["status"], found["amount_due"], found["currency"]) == (
        obj["status"],
        obj["amount_due"],
        obj["currency"],
    )


def test_older_invoice_takes_subscription_and_charge_from_the_invoice(settings: Settings) -> None:
    event = unique_event("stripe-sync-engine__invoice_paid__1", "v")
    obj = event["data"]["object"]
    obj["charge"] = "ch_old_1"
    apply(settings, event)
    found = row(settings, "invoices", obj["id"])
    assert found is not None
    assert (found["subscription_id"], found["charge_id"]) == (obj["subscription"], "ch_old_1")
    assert found["paid_at"] == at(obj["status_transitions"]["paid_at"])


def test_fixtures3_charge_dispute_refund_customer(settings: Settings) -> None:
    f3 = fixtures3()
    events = [
        wrap("customer.created", f3["customer"], "evt_f3_c", 1_234_567_901),
        wrap("charge.succeeded", f3["charge"], "evt_f3_ch", 1_234_567_902),
        wrap("charge.dispute.created", f3["dispute"], "evt_f3_dp", 1_234_567_903),
        wrap("refund.created", f3["refund"], "evt_f3_re", 1_234_567_904),
        wrap("checkout.session.completed", f3["checkout.session"], "evt_f3_cs", 1_234_567_905),
    ]
    apply(settings, *events)
    assert row(settings, "customers", f3["customer"]["id"]) is not None
    charge = row(settings, "charges", f3["charge"]["id"])
    assert charge is not None and charge["customer_id"] is None  # fixtures3's charge has none
    dispute = row(settings, "disputes", f3["dispute"]["id"])
    assert dispute is not None
    assert (dispute["charge_id"], dispute["status"]) == (
        f3["charge"]["id"],
        "warning_needs_response",
    )
    refund = row(settings, "refunds", f3["refund"]["id"])
    assert refund is not None and refund["amount"] == f3["refund"]["amount"]
    session = row(settings, "checkout_sessions", f3["checkout.session"]["id"])
    assert session is not None and session["mode"] == "payment"
