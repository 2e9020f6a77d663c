"""Every handled type, with real corpus events (event ids made unique): the mirror row holds the
object's fields, its source event and time; the event is `processed`; unhandled types are
`ignored` and write nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.db import connect
from shared.settings import Settings
from tests.support import corpus_files, load_event, unique_event
from tests.worker.mirror.support import apply, row, rows, store
from worker.mirror import handlers
from worker.registry import REGISTRY, Event, Tx

TABLES = {
    "checkout.session.": "checkout_sessions",
    "customer.subscription.": "subscriptions",
    "customer.": "customers",
    "invoice.": "invoices",
    "charge.dispute.": "disputes",
    "charge.refund.": "refunds",
    "refund.": "refunds",
    "charge.": "charges",
}

# Types with no sample in the corpus: built from the nearest corpus event of the same object,
# with the type (and the status Stripe gives it) changed.
DERIVED = {
    "customer.subscription.paused": (
        "stripe-sync-engine__subscription_updated__1",
        {"status": "paused"},
    ),
    "customer.subscription.resumed": (
        "stripe-sync-engine__subscription_updated__1",
        {"status": "active"},
    ),
    "invoice.marked_uncollectible": (
        "stripe-ruby-mock__invoice.payment_failed__1",
        {"status": "uncollectible"},
    ),
}


def table_for(event_type: str) -> str:
    for prefix, table in TABLES.items():
        if event_type.startswith(prefix):
            return table
    raise AssertionError(event_type)


def mirror_types() -> set[str]:
    """Types the mirror's own handlers take (other tests may register handlers in-process)."""
    return {
        t
        for t in REGISTRY.handled_types()
        if any(h.__module__.startswith("worker.mirror") for h in REGISTRY.handlers_for(t))
    }


def handled_corpus() -> list[str]:
    handled = mirror_types()
    return [p.stem for p in corpus_files() if load_event(p.stem)["type"] in handled]


def ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if isinstance(value, int) else None


def id_of(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def expected(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The table and the columns a reader of the mirror relies on, read straight from the
    object (older API shapes: that is what the corpus has)."""
    t, o = event["type"], event["data"]["object"]
    table = table_for(t)
    cols: dict[str, Any] = {"id": o["id"], "livemode": bool(o.get("livemode", False))}
    if table == "customers":
        cols.update(deleted=t == "customer.deleted", email=o.get("email"))
    elif table == "subscriptions":
        item = (o.get("items", {}).get("data") or [{}])[0]
        price = item.get("price") or item.get("plan") or o.get("plan") or {}
        cols.update(
            customer_id=o["customer"],
            status=o["status"],
            quantity=o.get("quantity"),
            current_period_end=ts(o.get("current_period_end")),
            cancel_at_period_end=bool(o.get("cancel_at_period_end")),
            price_id=price.get("id"),
        )
    elif table == "invoices":
        cols.update(
            customer_id=o["customer"],
            subscription_id=id_of(o.get("subscription")),
            status=o.get("status"),
            amount_due=o.get("amount_due"),
            amount_paid=o.get("amount_paid"),
            hosted_invoice_url=o.get("hosted_invoice_url"),
            charge_id=id_of(o.get("charge")),
        )
    elif table == "charges":
        cols.update(
            customer_id=o.get("customer"),
            amount=o["amount"],
            amount_refunded=o["amount_refunded"],
            refunded=o["refunded"],
            status=o.get("status"),
            payment_intent_id=o.get("payment_intent"),
        )
    elif table == "disputes":
        cols.update(
            charge_id=id_of(o["charge"]), amount=o["amount"], status=o["status"], reason=o["reason"]
        )
    elif table == "refunds":
        cols.update(charge_id=id_of(o["charge"]), amount=o["amount"], status=o["status"])
    elif table == "checkout_sessions":
        cols.update(
            customer_id=o.get("customer"),
            subscription_id=o.get("subscription"),
            client_reference_id=o.get("client_reference_id"),
            mode=o["mode"],
        )
    return table, cols


@pytest.mark.parametrize("name", handled_corpus())
def test_corpus_event_is_mirrored(settings: Settings, name: str) -> None:
    event = unique_event(name, "h")
    apply(settings, event)

    status = rows(settings, "SELECT status FROM stripe_events WHERE id = %s", (event["id"],))
    assert status == [{"status": "processed"}]
    obj = event["data"]["object"]
    if "id" not in obj:
        # Two hand-trimmed ruby-mock disputes have no id: nothing to key a row on, nothing written.
        table, _ = table_for(event["type"]), None
        assert rows(settings, f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]
        return
    table, cols = expected(event)
    found = row(settings, table, obj["id"])
    assert found is not None, f"no {table} row for {obj['id']}"
    assert {k: found[k] for k in cols} == cols
    assert found["source_event_id"] == event["id"]
    assert found["source_event_created"] == ts(event["created"])
    assert found["metadata"] == (obj.get("metadata") or {})


@pytest.mark.parametrize("event_type", sorted(DERIVED))
def test_types_missing_from_the_corpus(settings: Settings, event_type: str) -> None:
    name, changes = DERIVED[event_type]
    event = unique_event(name, "d")
    event["type"] = event_type
    event["data"]["object"].update(changes)
    apply(settings, event)
    table, cols = expected(event)
    found = row(settings, table, event["data"]["object"]["id"])
    assert found is not None
    assert {k: found[k] for k in cols} == cols


def test_every_issue_type_is_handled_and_has_a_sample() -> None:
    required = {
        "checkout.session.completed",
        *(f"customer.{t}" for t in ("created", "updated", "deleted")),
        *(
            f"customer.subscription.{t}"
            for t in ("created", "updated", "deleted", "paused", "resumed", "trial_will_end")
        ),
        *(
            f"invoice.{t}"
            for t in (
                "created",
                "finalized",
                "paid",
                "payment_succeeded",
                "payment_failed",
                "payment_action_required",
                "voided",
                "marked_uncollectible",
            )
        ),
        *(f"charge.{t}" for t in ("succeeded", "failed", "captured", "refunded", "updated")),
        *(
            f"charge.dispute.{t}"
            for t in ("created", "updated", "closed", "funds_withdrawn", "funds_reinstated")
        ),
        "refund.created",
        "refund.updated",
    }
    assert required <= mirror_types()
    sampled = {load_event(n)["type"] for n in handled_corpus()} | set(DERIVED)
    assert required <= sampled


def test_unhandled_types_are_ignored(settings: Settings) -> None:
    names = [
        p.stem
        for p in corpus_files()
        if load_event(p.stem)["type"] in ("payment_intent.succeeded", "product.created")
    ]
    events = [unique_event(n, "u") for n in names]
    apply(settings, *events)
    statuses = rows(settings, "SELECT DISTINCT status FROM stripe_events")
    assert statuses == [{"status": "ignored"}]
    for table in ("customers", "subscriptions", "invoices", "charges", "notifications"):
        assert rows(settings, f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


def test_charge_without_customer_then_dispute_and_refund_link_to_it(settings: Settings) -> None:
    """Disputes and refunds name no customer: the charge supplies it, in either order."""
    dispute = unique_event("stripe-sync-engine__charge_dispute_created__1", "l")
    refund = unique_event("stripe-sync-engine__refund_created__1", "l")
    charge = unique_event("stripe-sync-engine__charge_succeeded__1", "l")
    dispute["data"]["object"]["charge"] = charge["data"]["object"]["id"]
    refund["data"]["object"]["charge"] = charge["data"]["object"]["id"]
    apply(settings, dispute, refund)
    d_id, r_id = dispute["data"]["object"]["id"], refund["data"]["object"]["id"]
    assert row(settings, "disputes", d_id)["customer_id"] is None  # type: ignore[index]
    apply(settings, charge)
    customer = charge["data"]["object"]["customer"]
    assert row(settings, "disputes", d_id)["customer_id"] == customer  # type: ignore[index]
    assert row(settings, "refunds", r_id)["customer_id"] == customer  # type: ignore[index]


def test_checkout_session_links_the_app_user(settings: Settings) -> None:
    event = unique_event("stripe-ruby-mock__checkout.session.completed__1", "c")
    obj = event["data"]["object"]
    obj.update(
        client_reference_id="user_42", subscription="sub_link_1", metadata={"account": "acme"}
    )
    apply(settings, event)
    found = rows(
        settings,
        "SELECT customer_id, subscription_id, metadata FROM checkout_sessions "
        "WHERE client_reference_id = 'user_42'",
    )
    assert found == [
        {
            "customer_id": obj["customer"],
            "subscription_id": "sub_link_1",
            "metadata": {"account": "acme"},
        }
    ]


@pytest.mark.parametrize("first", ["charge", "dispute"])
def test_concurrent_charge_and_dispute_link_the_customer_whichever_commits_first(
    settings: Settings, first: str
) -> None:
    """A charge (customer's key) and its dispute (the charge's key) run in parallel
    transactions: the second waits for the first to commit, then links the customer."""
    dispute = unique_event("stripe-sync-engine__charge_dispute_created__1", "race" + first)
    charge = unique_event("stripe-sync-engine__charge_succeeded__1", "race" + first)
    dispute["data"]["object"]["charge"] = charge["data"]["object"]["id"]
    customer = charge["data"]["object"]["customer"]
    store(settings, [charge, dispute])
    events = {
        "charge": (handlers.charge_changed, _event_of(charge)),
        "dispute": (handlers.dispute_changed, _event_of(dispute)),
    }
    second = "dispute" if first == "charge" else "charge"
    with connect(settings.database_url) as one, connect(settings.database_url) as two:
        handler, event = events[first]
        handler(Tx(conn=one, settings=settings), event)  # written, not committed
        done = threading.Event()

        def run_second() -> None:
            handler2, event2 = events[second]
            handler2(Tx(conn=two, settings=settings), event2)
            two.commit()
            done.set()

        thread = threading.Thread(target=run_second)
        thread.start()
        assert not done.wait(0.5)  # waits for the first transaction's charge lock
        one.commit()
        thread.join(10)
        assert done.is_set()
    found = row(settings, "disputes", dispute["data"]["object"]["id"])
    assert found is not None and found["customer_id"] == customer


def _event_of(payload: dict[str, Any]) -> Event:
    return Event(
        id=payload["id"],
        type=payload["type"],
        created=datetime.fromtimestamp(payload["created"], UTC),
        livemode=bool(payload.get("livemode")),
        api_version=payload.get("api_version"),
        account=None,
        ordering_key="irrelevant",
        payload=payload,
    )
