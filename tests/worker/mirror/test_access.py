"""Access decisions, rule by rule, through real events; the view and the function agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.db import connect
from shared.settings import Settings
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply, rows
from worker.mirror.access import Access, customer_access

T = b.T0
NOW = datetime.fromtimestamp(T + 10 * b.DAY, tz=UTC)


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def decide(settings: Settings, customer_id: str, now: datetime = NOW) -> Access:
    with connect(settings.database_url) as conn:
        return customer_access(conn, customer_id, now)


def sub_event(cus: str, status: str, n: int = 1, **kw: Any) -> dict[str, Any]:
    obj = b.subscription("old", f"sub_{cus}_{n}", cus, status, **kw)
    return b.event("customer.subscription.updated", obj, f"evt_{cus}_{status}_{n}", T + n)


def failed_invoice(cus: str, failed_at: int, n: int = 1) -> dict[str, Any]:
    obj = b.invoice("old", f"in_{cus}_{n}", cus, f"sub_{cus}_1", "open")
    return b.event("invoice.payment_failed", obj, f"evt_{cus}_fail_{n}", failed_at)


@pytest.mark.parametrize("status", ["active", "trialing"])
def test_active_and_trialing_have_access(settings: Settings, status: str) -> None:
    trial_end = T + 14 * b.DAY if status == "trialing" else None
    apply(settings, sub_event("cus_a", status, trial_end=trial_end))
    decision = decide(settings, "cus_a")
    expected_until = at(trial_end) if trial_end else at(T + 30 * b.DAY)
    assert decision == Access("cus_a", True, status, expected_until)


@pytest.mark.parametrize(
    "status", ["canceled", "unpaid", "incomplete_expired", "incomplete", "paused"]
)
def test_other_statuses_have_no_access(settings: Settings, status: str) -> None:
    apply(settings, sub_event("cus_b", status))
    assert decide(settings, "cus_b") == Access("cus_b", False, status, None)


def test_past_due_has_access_until_the_grace_end_and_not_after(settings: Settings) -> None:
    failed_at = T + 5 * b.DAY
    apply(settings, sub_event("cus_g", "past_due"), failed_invoice("cus_g", failed_at))
    grace_end = at(failed_at) + timedelta(days=3)
    second = timedelta(seconds=1)
    assert decide(settings, "cus_g", grace_end - second) == Access(
        "cus_g", True, "past_due_grace", grace_end
    )
    assert decide(settings, "cus_g", grace_end) == Access("cus_g", False, "grace_expired", None)
    assert decide(settings, "cus_g", grace_end + second).has_access is False


def test_grace_counts_from_the_first_failed_payment(settings: Settings) -> None:
    """Stripe retries: later failures of the same invoice do not extend the grace, whatever the
    order they are processed in."""
    first, retry = T + 5 * b.DAY, T + 7 * b.DAY
    retry_event = failed_invoice("cus_f", retry)
    retry_event["id"] = "evt_cus_f_retry"
    apply(settings, sub_event("cus_f", "past_due"), retry_event, failed_invoice("cus_f", first))
    grace_end = at(first) + timedelta(days=3)
    assert decide(settings, "cus_f", grace_end - timedelta(seconds=1)).has_access is True
    assert decide(settings, "cus_f", grace_end + timedelta(seconds=1)).has_access is False


def test_grace_period_days_setting(settings: Settings) -> None:
    longer = settings.with_overrides(grace_period_days=7)
    failed_at = T + 5 * b.DAY
    apply(longer, sub_event("cus_l", "past_due"), failed_invoice("cus_l", failed_at))
    grace_end = at(failed_at) + timedelta(days=7)
    assert decide(longer, "cus_l", grace_end - timedelta(seconds=1)).has_access is True
    assert decide(longer, "cus_l", grace_end + timedelta(seconds=1)).has_access is False


def test_paying_the_failed_invoice_clears_the_grace(settings: Settings) -> None:
    failed_at = T + 5 * b.DAY
    paid = b.invoice("old", "in_cus_p_1", "cus_p", "sub_cus_p_1", "paid")
    apply(
        settings,
        sub_event("cus_p", "past_due"),
        failed_invoice("cus_p", failed_at),
        b.event("invoice.paid", paid, "evt_cus_p_paid", failed_at + 60),
    )
    late = at(failed_at) + timedelta(days=30)
    # Still past_due until Stripe's subscription update arrives: no failed unpaid invoice, no
    # grace end to enforce.
    assert decide(settings, "cus_p", late) == Access("cus_p", True, "past_due_grace", None)


def test_deleted_customer_has_no_access(settings: Settings) -> None:
    cus = b.customer("cus_d")
    apply(
        settings,
        sub_event("cus_d", "active"),
        b.event("customer.deleted", {**cus, "deleted": True}, "evt_cus_d_del", T + 5),
    )
    assert decide(settings, "cus_d") == Access("cus_d", False, "customer_deleted", None)


def test_open_dispute_removes_access_and_a_won_one_restores_it(settings: Settings) -> None:
    apply(
        settings,
        sub_event("cus_x", "active"),
        b.event("charge.succeeded", b.charge("ch_x", "cus_x"), "evt_x_ch", T + 2),
        b.event("charge.dispute.created", b.dispute("dp_x", "ch_x"), "evt_x_dp", T + 3),
    )
    assert decide(settings, "cus_x") == Access("cus_x", False, "dispute_open", None)
    apply(
        settings,
        b.event("charge.dispute.closed", b.dispute("dp_x", "ch_x", "won"), "evt_x_won", T + 4),
    )
    assert decide(settings, "cus_x").has_access is True


def test_dispute_before_its_charge_still_counts(settings: Settings) -> None:
    apply(
        settings,
        sub_event("cus_y", "active"),
        b.event("charge.dispute.created", b.dispute("dp_y", "ch_y"), "evt_y_dp", T + 3),
    )
    assert decide(settings, "cus_y").has_access is True  # no charge yet: the dispute names none
    apply(settings, b.event("charge.succeeded", b.charge("ch_y", "cus_y"), "evt_y_ch", T + 2))
    assert decide(settings, "cus_y") == Access("cus_y", False, "dispute_open", None)


def test_lost_dispute_on_the_latest_payment_removes_access(settings: Settings) -> None:
    apply(
        settings,
        sub_event("cus_z", "active"),
        b.event("charge.succeeded", b.charge("ch_z", "cus_z"), "evt_z_ch", T + 2),
        b.event("charge.dispute.closed", b.dispute("dp_z", "ch_z", "lost"), "evt_z_dp", T + 3),
    )
    assert decide(settings, "cus_z") == Access("cus_z", False, "dispute_lost", None)


def test_fully_refunded_latest_payment_removes_access(settings: Settings) -> None:
    apply(
        settings,
        sub_event("cus_r", "active"),
        b.event("charge.succeeded", b.charge("ch_r1", "cus_r", created=T), "e_r1", T + 2),
        b.event(
            "charge.refunded",
            b.charge("ch_r1", "cus_r", refunded_amount=1500, created=T),
            "e_r2",
            T + 3,
        ),
    )
    assert decide(settings, "cus_r") == Access("cus_r", False, "payment_refunded", None)
    # A newer payment that is not refunded restores access.
    apply(
        settings,
        b.event("charge.succeeded", b.charge("ch_r2", "cus_r", created=T + 9), "e_r3", T + 9),
    )
    assert decide(settings, "cus_r").has_access is True


def test_partial_refund_keeps_access(settings: Settings) -> None:
    apply(
        settings,
        sub_event("cus_q", "active"),
        b.event("charge.refunded", b.charge("ch_q", "cus_q", refunded_amount=500), "e_q", T + 3),
    )
    assert decide(settings, "cus_q").has_access is True


def test_refunds_adding_up_to_the_amount_remove_access(settings: Settings) -> None:
    """refund.created events may arrive before the charge's own refunded snapshot."""
    apply(
        settings,
        sub_event("cus_s", "active"),
        b.event("charge.succeeded", b.charge("ch_s", "cus_s"), "e_s1", T + 2),
        b.event("refund.created", b.refund("re_s1", "ch_s", 1000), "e_s2", T + 3),
    )
    assert decide(settings, "cus_s").has_access is True
    apply(settings, b.event("refund.created", b.refund("re_s2", "ch_s", 500), "e_s3", T + 4))
    assert decide(settings, "cus_s") == Access("cus_s", False, "payment_refunded", None)


def test_best_subscription_wins(settings: Settings) -> None:
    apply(settings, sub_event("cus_m", "canceled", 1), sub_event("cus_m", "active", 2))
    assert decide(settings, "cus_m").reason == "active"


def test_no_subscription_and_unknown_customer(settings: Settings) -> None:
    apply(settings, b.event("customer.created", b.customer("cus_n"), "evt_n", T))
    assert decide(settings, "cus_n") == Access("cus_n", False, "no_subscription", None)
    assert decide(settings, "cus_nobody") == Access("cus_nobody", False, "unknown_customer", None)


def test_view_agrees_with_the_function_at_now(settings: Settings) -> None:
    now = int(datetime.now(tz=UTC).timestamp())
    apply(
        settings,
        sub_event("cus_v1", "active", period_end=now + b.DAY),
        sub_event("cus_v2", "past_due"),
        failed_invoice("cus_v2", now - 4 * b.DAY),
        sub_event("cus_v3", "past_due"),
        failed_invoice("cus_v3", now - 1 * b.DAY),
        sub_event("cus_v4", "canceled"),
    )
    view = {r["customer_id"]: r for r in rows(settings, "SELECT * FROM customer_access")}
    assert {k: (v["has_access"], v["reason"]) for k, v in view.items()} == {
        "cus_v1": (True, "active"),
        "cus_v2": (False, "grace_expired"),
        "cus_v3": (True, "past_due_grace"),
        "cus_v4": (False, "canceled"),
    }
    with connect(settings.database_url) as conn:
        for customer_id, r in view.items():
            assert customer_access(conn, customer_id) == Access(**r)
