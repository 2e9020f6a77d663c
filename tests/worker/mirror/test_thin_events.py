"""Thin events in the worker (the Engine in-process, a fake Stripe API on 127.0.0.1): the related
object is read from Stripe in the event's account and applied to the mirror as its snapshot
would be; a thin event and its snapshot twin notify once; a type with no handler is never read."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.event import event_row
from ingest.storage import insert_events_sync
from shared.broker import make_broker
from shared.db import connect, make_pool
from shared.settings import Settings
from tests.support import STRIPE_PYTHON_THIN, thin_event
from tests.worker.mirror import builders as b
from tests.worker.mirror.fake_stripe import FakeStripe, fake_stripe
from tests.worker.mirror.support import process_pending, row, rows, wrap
from worker.engine import Engine
from worker.inflight import Outcome
from worker.mirror.services import mirror_services
from worker.registry import Event, Registry, Tx

T = b.T0
ACCOUNT = "acct_1Connected"


@pytest.fixture
def api() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


@pytest.fixture
def keyed(settings: Settings, api: FakeStripe) -> Settings:
    return settings.with_overrides(stripe_api_key="sk_test_thin", stripe_api_base=api.base_url)


def store(settings: Settings, *events: Mapping[str, Any], endpoint: str | None = None) -> None:
    """As the receiver stores them (through `endpoint`)."""
    with connect(settings.database_url) as conn:
        insert_events_sync(conn, [event_row(dict(e), json.dumps(e), endpoint) for e in events])


def status(settings: Settings, event_id: str) -> dict[str, Any]:
    found = rows(
        settings,
        "SELECT status, attempts, last_error, kind FROM stripe_events WHERE id = %s",
        (event_id,),
    )
    return found[0]


def test_a_thin_subscription_update_lands_its_subscription_in_the_mirror(
    keyed: Settings, api: FakeStripe
) -> None:
    api.put("/v1/subscriptions/sub_t1", b.subscription("current", "sub_t1", "cus_t1", "past_due"))
    evt = thin_event(
        "v1.customer.subscription.updated", "subscription", "sub_t1", "evt_t1", context=ACCOUNT
    )
    store(keyed, evt, endpoint="connect")
    before = datetime.now(UTC).replace(microsecond=0)

    assert [o.status for o in process_pending(keyed)] == ["processed"]

    found = row(keyed, "subscriptions", "sub_t1")
    assert found is not None
    assert (found["status"], found["customer_id"]) == ("past_due", "cus_t1")
    assert (found["account_id"], found["source_event_id"]) == (ACCOUNT, "evt_t1")
    # Stamped as of the read (never before the event's own `created`).
    assert before <= found["source_event_created"] <= datetime.now(UTC)
    # One read, of the related object, in the event's account, and no second re-fetch.
    assert [path for path, _ in api.requests] == ["/v1/subscriptions/sub_t1"]
    assert api.requests[0][1] == "Bearer sk_test_thin"
    assert api.headers[0]["stripe-account"] == ACCOUNT
    assert api.headers[0]["stripe-request-trigger"] == "event=evt_t1"
    assert status(keyed, "evt_t1")["kind"] == "thin"


def test_an_older_snapshot_after_a_thin_read_does_not_overwrite_it(
    keyed: Settings, api: FakeStripe
) -> None:
    api.put("/v1/subscriptions/sub_t2", b.subscription("current", "sub_t2", "cus_t2", "canceled"))
    store(keyed, thin_event("v1.customer.subscription.deleted", "subscription", "sub_t2", "evt_t2"))
    process_pending(keyed)
    api.objects.clear()  # the snapshot's own re-read finds nothing: its snapshot is all it has
    active = b.subscription("current", "sub_t2", "cus_t2", "active")
    store(keyed, b.event("customer.subscription.updated", active, "evt_t2_old", T, "current"))
    process_pending(keyed)
    found = row(keyed, "subscriptions", "sub_t2")
    assert found is not None
    assert (found["status"], found["source_event_id"]) == ("canceled", "evt_t2")


def _paid_twins(api: FakeStripe, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    invoice_id, snapshot_id = f"in_twin{n}", f"evt_twin{n}_snapshot"
    paid = b.invoice("current", invoice_id, f"cus_twin{n}", f"sub_twin{n}", "paid", amount=2500)
    api.put(f"/v1/invoices/{invoice_id}", paid)
    snapshot = b.event("invoice.paid", paid, snapshot_id, int(time.time()), "current")
    thin = thin_event(
        "v1.invoice.paid",
        "invoice",
        invoice_id,
        f"evt_twin{n}_thin",
        created=datetime.now(UTC).isoformat(),
        snapshot_event=snapshot_id,
    )
    return thin, snapshot


def _notifications(settings: Settings) -> list[dict[str, Any]]:
    return rows(
        settings,
        "SELECT event_id, dedupe_key, kind, customer_id, payload FROM notifications ORDER BY id",
    )


@pytest.mark.parametrize("first", ["thin", "snapshot", "together"])
def test_a_thin_invoice_paid_and_its_snapshot_twin_notify_once(
    keyed: Settings, api: FakeStripe, first: str
) -> None:
    thin, snapshot = _paid_twins(api, 1)
    if first == "together":
        store(keyed, thin, endpoint="connect")
        store(keyed, snapshot)
        outcomes = process_pending(keyed)
    else:
        one, other = (thin, snapshot) if first == "thin" else (snapshot, thin)
        store(keyed, one, endpoint="connect" if one is thin else None)
        outcomes = process_pending(keyed)
        store(keyed, other, endpoint="connect" if other is thin else None)
        outcomes += process_pending(keyed)

    assert sorted(o.status for o in outcomes) == ["processed", "processed"]
    notices = _notifications(keyed)
    assert [(n["kind"], n["dedupe_key"], n["customer_id"]) for n in notices] == [
        ("payment_succeeded", snapshot["id"], "cus_twin1")
    ]
    assert notices[0]["payload"]["invoice"] == "in_twin1"
    assert notices[0]["payload"]["amount_paid"] == 2500
    invoice = row(keyed, "invoices", "in_twin1")
    assert invoice is not None and invoice["status"] == "paid"


def test_twins_of_different_invoices_each_notify(keyed: Settings, api: FakeStripe) -> None:
    pairs = [_paid_twins(api, n) for n in (2, 3)]
    for thin, snapshot in pairs:
        store(keyed, thin, snapshot)
    process_pending(keyed)
    assert sorted(n["dedupe_key"] for n in _notifications(keyed)) == [
        "evt_twin2_snapshot",
        "evt_twin3_snapshot",
    ]


def test_a_thin_type_without_handler_is_ignored_without_a_read(
    keyed: Settings, api: FakeStripe
) -> None:
    notification = json.loads((STRIPE_PYTHON_THIN / "v2_payload_no_data.json").read_text())
    assert notification["type"] == "v1.billing.meter.error_report_triggered"
    store(keyed, notification)

    assert [(o.event_id, o.status) for o in process_pending(keyed)] == [("evt_234", "ignored")]
    assert api.requests == []
    assert status(keyed, "evt_234")["attempts"] == 1


def _settle(settings: Settings, engine: Engine, key: str, timeout: float = 20) -> list[Outcome]:
    """Drain `key` until nothing of it is pending, waiting out each retry's backoff."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + timeout
    while rows(settings, "SELECT 1 FROM stripe_events WHERE status = 'pending'"):
        assert time.monotonic() < deadline, "events still pending"
        outcomes += engine.drain(key)
        time.sleep(0.05)
    return outcomes


@pytest.fixture
def engine_for() -> Iterator[Any]:
    opened: list[Any] = []

    def build(settings: Settings, registry: Registry | None = None) -> Engine:
        pool = make_pool(settings.database_url, min_size=1, max_size=2, name="thin-tests")
        pool.open(wait=True)
        broker = make_broker(settings)
        opened.append((pool, broker))
        extra = {"registry": registry} if registry is not None else {}
        return Engine(
            pool=pool,
            settings=settings,
            enqueue=lambda i, d: None,
            services=mirror_services(settings, broker),
            **extra,
        )

    yield build
    for pool, broker in opened:
        pool.close()
        broker.close()


def test_without_an_api_key_a_thin_event_fails_naming_the_setting_then_dies(
    settings: Settings, engine_for: Any
) -> None:
    import worker.mirror.handlers  # noqa: F401  (the mirror handles v1.invoice.paid)

    store(settings, thin_event("v1.invoice.paid", "invoice", "in_nokey", "evt_nokey"))
    outcomes = _settle(settings, engine_for(settings), "in_nokey")

    assert [o.status for o in outcomes] == ["retry", "retry", "dead"]  # WORKER_MAX_RETRIES=3
    assert all("STRIPE_API_KEY is not set" in (o.error or "") for o in outcomes)
    dead = rows(settings, "SELECT error FROM dead_letters WHERE event_id = 'evt_nokey'")
    assert len(dead) == 1 and "STRIPE_API_KEY" in dead[0]["error"]
    assert (status(settings, "evt_nokey")["status"], status(settings, "evt_nokey")["attempts"]) == (
        "dead",
        3,
    )


def test_a_transient_failure_of_the_read_is_retried_in_place(
    keyed: Settings, api: FakeStripe
) -> None:
    api.put("/v1/invoices/in_flaky", b.invoice("current", "in_flaky", "cus_f", None, "open"))
    api.failures = [503, 500]
    store(keyed, thin_event("v1.invoice.updated", "invoice", "in_flaky", "evt_flaky"))
    assert [o.status for o in process_pending(keyed)] == ["processed"]
    assert len(api.requests) == 3
    found = row(keyed, "invoices", "in_flaky")
    assert found is not None and found["status"] == "open"


def test_an_object_stripe_does_not_have_fails_the_attempt(keyed: Settings, api: FakeStripe) -> None:
    store(keyed, thin_event("v1.invoice.updated", "invoice", "in_gone", "evt_gone"))
    assert [o.status for o in process_pending(keyed)] == ["retry"]
    assert status(keyed, "evt_gone")["last_error"] == (
        "ThinEventError: Stripe has no /v1/invoices/in_gone (404)"
    )
    assert row(keyed, "invoices", "in_gone") is None


def test_a_users_thin_handler_gets_the_fetched_object_and_changes_on_demand(
    keyed: Settings, api: FakeStripe, engine_for: Any
) -> None:
    """stripe-python's own thin event and meter, served by the fake as Stripe serves them."""
    meter = json.loads((STRIPE_PYTHON_THIN / "related_billing_meter_mtr_123.json").read_text())
    full = json.loads((STRIPE_PYTHON_THIN / "v2_payload_with_data.json").read_text())
    full["changes"] = {"before": {"event_name": "old event"}, "after": {"event_name": "cool event"}}
    api.put("/v1/billing/meters/mtr_123", meter)
    api.put("/v2/core/events/evt_234", full)
    seen: list[tuple[str, dict[str, Any], dict[str, Any], datetime | None]] = []
    registry = Registry()

    @registry.handles("v1.billing.meter.error_report_triggered")
    def on_meter_error(tx: Tx, event: Event) -> None:
        seen.append((event.type, event.object, event.previous_attributes, event.read_at))

    notification = json.loads((STRIPE_PYTHON_THIN / "v2_payload_no_data.json").read_text())
    store(keyed, notification)
    engine = engine_for(keyed, registry)

    assert [o.status for o in engine.drain("mtr_123")] == ["processed"]
    [(event_type, obj, previous, read_at)] = seen
    assert event_type == "v1.billing.meter.error_report_triggered"
    assert obj == meter
    assert previous == {"event_name": "old event"}
    assert read_at is not None
    paths = [path for path, _ in api.requests]
    assert paths == ["/v1/billing/meters/mtr_123", "/v2/core/events/evt_234"]
    # The account (`context`) as Stripe's SDKs send it: Stripe-Account for v1, Stripe-Context
    # for v2.
    assert api.headers[0]["stripe-account"] == "acct_123"
    assert api.headers[1]["stripe-context"] == "acct_123"
    assert "stripe-account" not in api.headers[1]


def test_a_handler_that_does_not_ask_for_changes_reads_only_the_object(
    keyed: Settings, api: FakeStripe, engine_for: Any
) -> None:
    api.put("/v1/customers/cus_plain", b.customer("cus_plain"))
    registry = Registry()
    names: list[str] = []

    @registry.handles("v1.customer.updated")
    def on_customer(tx: Tx, event: Event) -> None:
        names.append(event.object["id"])

    store(keyed, thin_event("v1.customer.updated", "customer", "cus_plain", "evt_plain"))
    assert [o.status for o in engine_for(keyed, registry).drain("cus_plain")] == ["processed"]
    assert names == ["cus_plain"]
    assert [path for path, _ in api.requests] == ["/v1/customers/cus_plain"]


def test_changes_carried_by_the_notification_are_used_without_a_read(
    keyed: Settings, api: FakeStripe, engine_for: Any
) -> None:
    api.put("/v1/subscriptions/sub_ch", b.subscription("current", "sub_ch", "cus_ch", "past_due"))
    registry = Registry()
    previous: list[dict[str, Any]] = []

    @registry.handles("v1.customer.subscription.updated")
    def on_update(tx: Tx, event: Event) -> None:
        previous.append(event.previous_attributes)

    evt = thin_event(
        "v1.customer.subscription.updated",
        "subscription",
        "sub_ch",
        "evt_ch",
        changes={"before": {"status": "active"}, "after": {"status": "past_due"}},
    )
    store(keyed, evt)
    engine_for(keyed, registry).drain("sub_ch")
    assert previous == [{"status": "active"}]
    assert [path for path, _ in api.requests] == ["/v1/subscriptions/sub_ch"]


def test_a_connect_snapshot_event_keeps_its_account_on_every_mirror_row(keyed: Settings) -> None:
    charge = b.charge("ch_acct", "cus_acct")
    events = [
        wrap("customer.created", b.customer("cus_acct"), "evt_acct_1", T),
        wrap("charge.succeeded", charge, "evt_acct_2", T + 1),
    ]
    for evt in events:
        evt["account"] = ACCOUNT
    store(keyed.with_overrides(stripe_api_key=None), *events, endpoint="connect")
    process_pending(keyed.with_overrides(stripe_api_key=None))
    for table, object_id in (("customers", "cus_acct"), ("charges", "ch_acct")):
        found = row(keyed, table, object_id)
        assert found is not None and found["account_id"] == ACCOUNT, table
    platform = wrap("customer.created", b.customer("cus_platform"), "evt_platform", T)
    store(keyed, platform)
    process_pending(keyed.with_overrides(stripe_api_key=None))
    found = row(keyed, "customers", "cus_platform")
    assert found is not None and found["account_id"] is None
