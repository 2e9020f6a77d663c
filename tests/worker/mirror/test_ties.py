"""Same-second events of one object are applied in Stripe's order, whichever arrives first: the
order is read from the events (type, `previous_attributes`, Stripe's status transitions), never
from arrival order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from shared.db import connect
from shared.settings import Settings
from tests.worker.mirror import builders as b
from tests.worker.mirror.fake_stripe import FakeStripe, fake_stripe
from tests.worker.mirror.support import apply, row, wrap
from worker.mirror.access import customer_access

T = b.T0


def sub_event(
    event_type: str,
    sub: str,
    cus: str,
    status: str,
    event_id: str,
    previous: dict[str, Any] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    obj = b.subscription("current", sub, cus, status, **kw)
    return wrap(event_type, obj, event_id, T, previous_attributes=previous)


def checkout(sub: str, cus: str) -> list[dict[str, Any]]:
    """What every Checkout sends in one second: the subscription created `incomplete`, then
    updated to `active` once its first invoice is paid."""
    return [
        sub_event("customer.subscription.created", sub, cus, "incomplete", f"{sub}_created"),
        sub_event(
            "customer.subscription.updated",
            sub,
            cus,
            "active",
            f"{sub}_updated",
            {"status": "incomplete"},
        ),
    ]


def status_of(settings: Settings, sub: str) -> str:
    found = row(settings, "subscriptions", sub)
    assert found is not None
    return str(found["status"])


def has_access(settings: Settings, cus: str) -> bool:
    with connect(settings.database_url) as conn:
        return customer_access(conn, cus).has_access


def test_checkout_update_processed_before_its_create_leaves_the_customer_active(
    settings: Settings,
) -> None:
    """The defect: the update arrived (and was applied) first, then the create overwrote it."""
    created, updated = checkout("sub_t1", "cus_t1")
    apply(settings, updated)
    apply(settings, created)
    assert status_of(settings, "sub_t1") == "active"
    assert has_access(settings, "cus_t1") is True
    found = row(settings, "subscriptions", "sub_t1")
    assert found is not None and found["source_event_id"] == "sub_t1_updated"


def test_checkout_update_received_first_and_processed_together(settings: Settings) -> None:
    """Both stored before the worker runs: same `created`, the update received first, so the
    worker's creation order (created, received_at, id) runs it first."""
    created, updated = checkout("sub_t2", "cus_t2")
    apply(settings, updated, created)
    assert status_of(settings, "sub_t2") == "active"
    assert has_access(settings, "cus_t2") is True


def trial_to_past_due(sub: str, cus: str) -> list[dict[str, Any]]:
    """A trial ends and its first payment fails, all in one second."""
    trial = {"trial_end": T}
    return [
        sub_event("customer.subscription.created", sub, cus, "trialing", f"{sub}_0", **trial),
        sub_event(
            "customer.subscription.updated",
            sub,
            cus,
            "active",
            f"{sub}_1",
            {"status": "trialing"},
            **trial,
        ),
        sub_event(
            "customer.subscription.updated",
            sub,
            cus,
            "past_due",
            f"{sub}_2",
            {"status": "active"},
            **trial,
        ),
    ]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_three_status_changes_in_one_second_in_any_order(
    settings: Settings, order: tuple[int, ...]
) -> None:
    events = trial_to_past_due("sub_t3", "cus_t3")
    for i in order:
        apply(settings, events[i])
    assert status_of(settings, "sub_t3") == "past_due"


@pytest.mark.parametrize("recovery_first", [True, False])
def test_a_recovery_in_the_same_second_comes_after_the_state_it_left(
    settings: Settings, recovery_first: bool
) -> None:
    """past_due -> active is a step back in Stripe's status order: its previous_attributes say
    it left past_due, so it comes after the update that wrote past_due."""
    sub, cus = "sub_t4", "cus_t4"
    failed = sub_event(
        "customer.subscription.updated", sub, cus, "past_due", "t4_fail", {"status": "active"}
    )
    recovered = sub_event(
        "customer.subscription.updated", sub, cus, "active", "t4_paid", {"status": "past_due"}
    )
    for event in (recovered, failed) if recovery_first else (failed, recovered):
        apply(settings, event)
    assert status_of(settings, sub) == "active"


@pytest.mark.parametrize("update_first", [True, False])
def test_created_before_updated_before_deleted(settings: Settings, update_first: bool) -> None:
    """Event type order decides when the statuses do not: an update that changed nothing about
    the status (active, only `cancel_at_period_end`) and the create of the same second."""
    sub, cus = "sub_t5", "cus_t5"
    created = sub_event("customer.subscription.created", sub, cus, "active", "t5_c")
    updated = sub_event(
        "customer.subscription.updated",
        sub,
        cus,
        "active",
        "t5_u",
        {"cancel_at_period_end": False},
    )
    updated["data"]["object"]["cancel_at_period_end"] = True
    for event in (updated, created) if update_first else (created, updated):
        apply(settings, event)
    found = row(settings, "subscriptions", sub)
    assert found is not None
    assert (found["cancel_at_period_end"], found["source_event_id"]) == (True, "t5_u")


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_invoice_draft_open_paid_in_one_second(settings: Settings, order: tuple[int, ...]) -> None:
    """No previous_attributes on these (Stripe sends them on `.updated` only): the status
    order decides."""
    inv, cus, sub = "in_t6", "cus_t6", "sub_t6"
    events = [
        wrap(kind, b.invoice("current", inv, cus, sub, status), f"t6_{i}", T)
        for i, (kind, status) in enumerate(
            [("invoice.created", "draft"), ("invoice.finalized", "open"), ("invoice.paid", "paid")]
        )
    ]
    for i in order:
        apply(settings, events[i])
    found = row(settings, "invoices", inv)
    assert found is not None
    assert (found["status"], found["source_event_id"]) == ("paid", "t6_2")


def test_equal_rank_events_end_the_same_in_either_order(
    settings: Settings, reference_settings: Settings
) -> None:
    """Two updates the rules cannot order (same status, no status change named): not decided by
    arrival; both delivery orders leave the same row."""
    sub, cus = "sub_t7", "cus_t7"
    one = sub_event("customer.subscription.updated", sub, cus, "active", "t7_a", price_id="p_a")
    two = sub_event("customer.subscription.updated", sub, cus, "active", "t7_b", price_id="p_b")
    apply(settings, one)
    apply(settings, two)
    apply(reference_settings, two)
    apply(reference_settings, one)
    first, second = (
        row(settings, "subscriptions", sub),
        row(reference_settings, "subscriptions", sub),
    )
    assert first is not None and second is not None
    assert first["price_id"] == second["price_id"]
    assert first["source_event_id"] == second["source_event_id"]


@pytest.fixture
def api() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


def test_with_an_api_key_a_tie_is_settled_by_reading_the_subscription(
    settings: Settings, api: FakeStripe
) -> None:
    keyed = settings.with_overrides(stripe_api_key="sk_test_ties", stripe_api_base=api.base_url)
    sub, cus = "sub_t8", "cus_t8"
    api.put("/v1/subscriptions/sub_t8", b.subscription("current", sub, cus, "active"))
    created, updated = checkout(sub, cus)
    apply(keyed, updated)
    apply(keyed, created)
    assert status_of(keyed, sub) == "active"
    assert len(api.requests) == 2
