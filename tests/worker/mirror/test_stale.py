"""Stale protection: an older snapshot never overwrites a newer one, final statuses stay final,
and duplicates or replays change nothing."""

from __future__ import annotations

from shared.settings import Settings
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply, replay, row, rows
from worker.mirror import notifications

T = b.T0


def test_late_update_after_delete_leaves_the_subscription_canceled(settings: Settings) -> None:
    active = b.subscription("old", "sub_s1", "cus_s1", "active")
    canceled = b.subscription("old", "sub_s1", "cus_s1", "canceled")
    apply(settings, b.event("customer.subscription.deleted", canceled, "evt_del", T + 10))
    # Stripe delivers the earlier update late.
    apply(settings, b.event("customer.subscription.updated", active, "evt_upd", T + 5))
    found = row(settings, "subscriptions", "sub_s1")
    assert found is not None
    assert found["status"] == "canceled"
    assert found["source_event_id"] == "evt_del"
    assert rows(settings, "SELECT status FROM stripe_events ORDER BY id") == [
        {"status": "processed"},
        {"status": "processed"},
    ]


def test_update_in_the_same_second_as_the_delete_does_not_reactivate(settings: Settings) -> None:
    """An exact tie, applied after the delete: Stripe never reactivates a canceled subscription,
    so canceled is final whatever the order."""
    active = b.subscription("current", "sub_s2", "cus_s2", "active")
    canceled = b.subscription("current", "sub_s2", "cus_s2", "canceled")
    apply(settings, b.event("customer.subscription.deleted", canceled, "evt_del2", T + 10))
    apply(settings, b.event("customer.subscription.updated", active, "evt_upd2", T + 10))
    assert row(settings, "subscriptions", "sub_s2")["status"] == "canceled"  # type: ignore[index]


def test_older_snapshot_is_not_written_and_newer_is(settings: Settings) -> None:
    sub = "sub_s3"
    apply(
        settings,
        b.event(
            "customer.subscription.updated",
            b.subscription("old", sub, "cus_s3", "past_due", price_id="price_pro"),
            "evt_new",
            T + 20,
        ),
    )
    apply(
        settings,
        b.event(
            "customer.subscription.updated",
            b.subscription("old", sub, "cus_s3", "active", price_id="price_basic"),
            "evt_old",
            T + 10,
        ),
    )
    found = row(settings, "subscriptions", sub)
    assert (found["status"], found["price_id"]) == ("past_due", "price_pro")  # type: ignore[index]
    apply(
        settings,
        b.event(
            "customer.subscription.updated",
            b.subscription("old", sub, "cus_s3", "active", price_id="price_pro"),
            "evt_newer",
            T + 30,
        ),
    )
    assert row(settings, "subscriptions", sub)["status"] == "active"  # type: ignore[index]


def test_same_second_events_apply_in_stripe_s_order(settings: Settings) -> None:
    """Stored together, one second apart or tied: a tie is settled by Stripe's order (here the
    status transitions: active -> past_due), not by which was received last."""
    sub, cus = "sub_s4", "cus_s4"
    events = [
        b.event("customer.subscription.updated", b.subscription("old", sub, cus, s), f"e{i}", t)
        for i, (s, t) in enumerate([("active", T + 1), ("past_due", T + 2), ("active", T + 2)])
    ]
    apply(settings, *events)
    found = row(settings, "subscriptions", sub)
    assert (found["status"], found["source_event_id"]) == ("past_due", "e1")  # type: ignore[index]
    # A recovery in that second names the status it left: it comes after the past_due.
    recovered = b.event(
        "customer.subscription.updated", b.subscription("old", sub, cus, "active"), "e3", T + 2
    )
    recovered["data"]["previous_attributes"] = {"status": "past_due"}
    apply(settings, recovered)
    found = row(settings, "subscriptions", sub)
    assert (found["status"], found["source_event_id"]) == ("active", "e3")  # type: ignore[index]


def test_paid_invoice_is_final_and_ties_never_move_status_back(settings: Settings) -> None:
    inv = "in_s5"
    paid = b.invoice("old", inv, "cus_s5", "sub_s5", "paid")
    opened = b.invoice("old", inv, "cus_s5", "sub_s5", "open")
    apply(settings, b.event("invoice.paid", paid, "evt_paid", T + 10))
    apply(settings, b.event("invoice.finalized", opened, "evt_fin", T + 10))
    apply(settings, b.event("invoice.payment_failed", opened, "evt_fail", T + 5))
    found = row(settings, "invoices", inv)
    assert found is not None
    assert (found["status"], found["amount_paid"]) == ("paid", 1500)
    # The failure is still recorded (earliest failed payment), but a paid invoice gives no grace,
    # and its "payment failed" notice is settled unsent.
    assert found["first_failed_at"] is not None
    notices = rows(settings, "SELECT id, kind FROM notifications ORDER BY id")
    assert [n["kind"] for n in notices] == ["payment_succeeded", "payment_failed"]
    assert notifications.deliver(settings, notices[1]["id"]) is True
    assert rows(settings, "SELECT last_error FROM notifications WHERE kind = 'payment_failed'") == [
        {"last_error": "not sent: the invoice is paid"}
    ]


def test_draft_after_open_in_the_same_second_keeps_open(settings: Settings) -> None:
    inv = "in_s6"
    apply(
        settings,
        b.event("invoice.finalized", b.invoice("old", inv, "c", None, "open"), "e_fin", T),
        b.event("invoice.created", b.invoice("old", inv, "c", None, "draft"), "e_cre", T),
    )
    assert row(settings, "invoices", inv)["status"] == "open"  # type: ignore[index]


def test_deleted_customer_stays_deleted(settings: Settings) -> None:
    cus = b.customer("cus_s7")
    apply(settings, b.event("customer.deleted", {**cus, "deleted": True}, "e_del", T + 5))
    apply(settings, b.event("customer.updated", cus, "e_upd", T + 5))
    apply(settings, b.event("customer.updated", cus, "e_upd_old", T + 1))
    found = row(settings, "customers", "cus_s7")
    assert found is not None
    assert found["deleted"] is True
    assert found["source_event_id"] == "e_del"


def test_refund_amount_never_shrinks_on_a_tie(settings: Settings) -> None:
    """charge.refunded and a charge.updated of the same second arrive in either order."""
    refunded = b.charge("ch_s8", "cus_s8", refunded_amount=1500)
    before = b.charge("ch_s8", "cus_s8")
    apply(settings, b.event("charge.refunded", refunded, "e_ref", T + 3))
    apply(settings, b.event("charge.updated", before, "e_upd", T + 3))
    found = row(settings, "charges", "ch_s8")
    assert found is not None
    assert (found["refunded"], found["amount_refunded"]) == (True, 1500)


def test_closed_dispute_is_final(settings: Settings) -> None:
    apply(settings, b.event("charge.dispute.closed", b.dispute("dp_s9", "ch_s9", "won"), "e1", T))
    apply(
        settings,
        b.event("charge.dispute.updated", b.dispute("dp_s9", "ch_s9", "under_review"), "e2", T),
    )
    assert row(settings, "disputes", "dp_s9")["status"] == "won"  # type: ignore[index]


def test_replays_and_duplicates_change_nothing(settings: Settings) -> None:
    sub, cus = "sub_s10", "cus_s10"
    first = b.event(
        "customer.subscription.updated", b.subscription("old", sub, cus, "active"), "e_a", T + 1
    )
    second = b.event(
        "customer.subscription.updated", b.subscription("old", sub, cus, "past_due"), "e_b", T + 2
    )
    apply(settings, first, second)
    before = row(settings, "subscriptions", sub)
    apply(settings, first, second)  # duplicates: stored once, nothing new to process
    replay(settings, "e_a")  # an older event replayed: stale, not written
    after = row(settings, "subscriptions", sub)
    assert before is not None and after is not None
    assert after["status"] == "past_due" and after["source_event_id"] == "e_b"
    assert after["updated_at"] == before["updated_at"]
    replay(settings, "e_b")  # the newest replayed: the same snapshot again
    again = row(settings, "subscriptions", sub)
    assert again is not None
    assert {k: again[k] for k in again if k != "updated_at"} == {
        k: before[k] for k in before if k != "updated_at"
    }
