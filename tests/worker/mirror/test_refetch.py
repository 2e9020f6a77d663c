"""With STRIPE_API_KEY set, subscription and invoice handlers write the object as Stripe has it
now (a fake Stripe API on 127.0.0.1), retrying connection errors, 429 and 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from shared.settings import Settings
from tests.worker.mirror import builders as b
from tests.worker.mirror.fake_stripe import FakeStripe, fake_stripe
from tests.worker.mirror.support import apply, row, rows
from worker.mirror import notifications

T = b.T0


@pytest.fixture
def api() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


@pytest.fixture
def keyed(settings: Settings, api: FakeStripe) -> Settings:
    return settings.with_overrides(stripe_api_key="sk_test_mirror", stripe_api_base=api.base_url)


def test_a_late_event_writes_the_current_object(keyed: Settings, api: FakeStripe) -> None:
    """An old `updated (active)` processed last still leaves what Stripe says now: canceled."""
    api.put(
        "/v1/subscriptions/sub_r1",
        b.subscription("current", "sub_r1", "cus_r1", "canceled"),
    )
    late = b.subscription("old", "sub_r1", "cus_r1", "active")
    before = datetime.now(UTC).replace(microsecond=0)
    apply(keyed, b.event("customer.subscription.updated", late, "evt_r1", T))
    found = row(keyed, "subscriptions", "sub_r1")
    assert found is not None
    assert found["status"] == "canceled"
    assert found["source_event_id"] == "evt_r1"
    assert found["source_event_created"] >= before  # the time of the read, not the event's
    assert api.requests == [("/v1/subscriptions/sub_r1", "Bearer sk_test_mirror")]


def test_invoice_is_refetched(keyed: Settings, api: FakeStripe) -> None:
    api.put("/v1/invoices/in_r2", b.invoice("current", "in_r2", "cus_r2", "sub_r2", "paid"))
    stale = b.invoice("old", "in_r2", "cus_r2", "sub_r2", "open")
    apply(keyed, b.event("invoice.payment_failed", stale, "evt_r2", T))
    found = row(keyed, "invoices", "in_r2")
    assert found is not None
    assert (found["status"], found["subscription_id"]) == ("paid", "sub_r2")
    # The failure is recorded, but the invoice is paid: its "payment failed" notice is not sent.
    assert found["first_failed_at"] == datetime.fromtimestamp(T, tz=UTC)
    [notice] = rows(keyed, "SELECT id FROM notifications WHERE kind = 'payment_failed'")
    assert notifications.deliver(keyed, notice["id"]) is True
    [settled] = rows(keyed, "SELECT sent_at, last_error FROM notifications")
    assert settled["sent_at"] is not None
    assert settled["last_error"] == "not sent: the invoice is paid"


def test_transient_failures_are_retried(keyed: Settings, api: FakeStripe) -> None:
    api.put("/v1/subscriptions/sub_r3", b.subscription("current", "sub_r3", "cus_r3", "active"))
    api.failures = [500, 429, 503]
    stale = b.subscription("old", "sub_r3", "cus_r3", "incomplete")
    apply(keyed, b.event("customer.subscription.created", stale, "evt_r3", T))
    assert row(keyed, "subscriptions", "sub_r3")["status"] == "active"  # type: ignore[index]
    assert len(api.requests) == 4


def test_persistent_failure_fails_the_event(keyed: Settings, api: FakeStripe) -> None:
    api.put("/v1/subscriptions/sub_r4", b.subscription("current", "sub_r4", "cus_r4", "active"))
    api.failures = [500] * 10
    stale = b.subscription("old", "sub_r4", "cus_r4", "incomplete")
    [outcome] = apply(keyed, b.event("customer.subscription.created", stale, "evt_r4", T))
    assert outcome.status == "retry" and outcome.error is not None
    assert outcome.error.startswith("APIError")
    assert len(api.requests) == 4  # tenacity's attempts; then the worker's own retries
    assert row(keyed, "subscriptions", "sub_r4") is None


def test_an_invalid_key_is_not_retried(keyed: Settings, api: FakeStripe) -> None:
    api.failures = [401]
    stale = b.subscription("old", "sub_r5", "cus_r5", "active")
    [outcome] = apply(keyed, b.event("customer.subscription.updated", stale, "evt_r5", T))
    assert outcome.status == "retry" and outcome.error is not None
    assert outcome.error.startswith("AuthenticationError")
    assert len(api.requests) == 1


def test_an_object_stripe_no_longer_has_is_written_from_the_event(
    keyed: Settings, api: FakeStripe
) -> None:
    obj = b.subscription("old", "sub_r6", "cus_r6", "canceled")
    apply(keyed, b.event("customer.subscription.deleted", obj, "evt_r6", T))
    found = row(keyed, "subscriptions", "sub_r6")
    assert found is not None
    assert found["status"] == "canceled"
    assert found["source_event_created"] == datetime.fromtimestamp(T, tz=UTC)


def test_connection_refused_is_retried_then_fails(settings: Settings) -> None:
    from tests.procs import free_port

    keyed = settings.with_overrides(
        stripe_api_key="sk_test_mirror", stripe_api_base=f"http://127.0.0.1:{free_port()}"
    )
    stale = b.subscription("old", "sub_r7", "cus_r7", "active")
    [outcome] = apply(keyed, b.event("customer.subscription.updated", stale, "evt_r7", T))
    assert outcome.status == "retry" and outcome.error is not None
    assert outcome.error.startswith("APIConnectionError")
