"""Fields taken from another object are right whichever object arrives first: a dispute's and a
refund's customer from their charge (rows and the notifications written before the charge was
known), an invoice's subscription."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from shared.db import connect
from shared.settings import Settings
from tests.worker.mirror import builders as b
from tests.worker.mirror.fake_smtp import fake_smtp
from tests.worker.mirror.fake_stripe import fake_stripe
from tests.worker.mirror.support import apply, row, rows, wrap
from worker.mirror import notifications, queries, shapes

T = b.T0
EMAIL = "disputed@example.com"


def dispute_opened(settings: Settings) -> dict[str, object]:
    [note] = rows(settings, "SELECT * FROM notifications WHERE kind = 'dispute_opened'")
    return note


def test_a_dispute_processed_before_its_charge_notifies_the_charge_s_customer(
    settings: Settings,
) -> None:
    """The defect: the dispute (keyed by charge) ran before the charge (keyed by customer); its
    notification kept no customer and was delivered to nobody."""
    cus, ch = "cus_l1", "ch_l1"
    apply(settings, b.event("customer.created", b.customer(cus, email=EMAIL), "l1_cus", T))
    apply(settings, b.event("charge.dispute.created", b.dispute("dp_l1", ch), "l1_dp", T + 5))
    assert dispute_opened(settings)["customer_id"] is None
    apply(settings, b.event("charge.succeeded", b.charge(ch, cus), "l1_ch", T + 1))

    found = row(settings, "disputes", "dp_l1")
    assert found is not None and found["customer_id"] == cus
    note = dispute_opened(settings)
    assert note["customer_id"] == cus
    with fake_smtp() as box:
        smtp = settings.with_overrides(smtp_url=f"smtp://127.0.0.1:{box.port}")
        assert notifications.deliver(smtp, int(note["id"])) is True  # type: ignore[call-overload]
    assert [to for _, to, _ in box.messages] == [[EMAIL]]


def test_a_notification_waiting_for_its_charge_is_held_back(settings: Settings) -> None:
    """Delivered before the charge is known, it would go to nobody: delivery leaves it for
    later (the sweeper sends it again), until the charge arrives or the wait is over."""
    cus, ch = "cus_l2", "ch_l2"
    apply(settings, b.event("customer.created", b.customer(cus, email=EMAIL), "l2_cus", T))
    apply(settings, b.event("charge.dispute.created", b.dispute("dp_l2", ch), "l2_dp", T + 5))
    note = dispute_opened(settings)
    assert note["awaits_charge"] == ch
    with fake_smtp() as box:
        smtp = settings.with_overrides(smtp_url=f"smtp://127.0.0.1:{box.port}")
        assert notifications.deliver(smtp, int(note["id"])) is False  # type: ignore[call-overload]
        assert dispute_opened(settings)["sent_at"] is None
        apply(settings, b.event("charge.succeeded", b.charge(ch, cus), "l2_ch", T + 1))
        assert dispute_opened(settings)["awaits_charge"] is None
        assert notifications.deliver(smtp, int(note["id"])) is True  # type: ignore[call-overload]
    assert [to for _, to, _ in box.messages] == [[EMAIL]]


def test_a_charge_that_never_comes_stops_holding_the_notification(settings: Settings) -> None:
    apply(settings, b.event("charge.dispute.created", b.dispute("dp_l3", "ch_l3"), "l3_dp", T))
    note = dispute_opened(settings)
    assert notifications.deliver(settings, int(note["id"])) is False  # type: ignore[call-overload]
    with connect(settings.database_url) as conn:
        conn.execute(
            "UPDATE notifications SET created_at = created_at - %s",
            (notifications.LINK_WAIT,),
        )
        conn.commit()
    assert notifications.deliver(settings, int(note["id"])) is True  # type: ignore[call-overload]


def test_a_known_charge_without_a_customer_holds_nothing(settings: Settings) -> None:
    apply(settings, b.event("charge.succeeded", b.charge("ch_l4", None), "l4_ch", T))
    apply(settings, b.event("charge.dispute.created", b.dispute("dp_l4", "ch_l4"), "l4_dp", T + 1))
    note = dispute_opened(settings)
    assert (note["customer_id"], note["awaits_charge"]) == (None, None)
    assert notifications.deliver(settings, int(note["id"])) is True  # type: ignore[call-overload]


def test_a_sent_notification_is_not_rewritten_by_a_late_charge(settings: Settings) -> None:
    apply(settings, b.event("charge.dispute.created", b.dispute("dp_l5", "ch_l5"), "l5_dp", T))
    with connect(settings.database_url) as conn:
        conn.execute("UPDATE notifications SET sent_at = now()")
        conn.commit()
    apply(settings, b.event("charge.succeeded", b.charge("ch_l5", "cus_l5"), "l5_ch", T - 5))
    assert dispute_opened(settings)["customer_id"] is None  # what was sent stays as it was
    found = row(settings, "disputes", "dp_l5")
    assert found is not None and found["customer_id"] == "cus_l5"


def test_a_refund_processed_before_its_charge_gets_the_customer(settings: Settings) -> None:
    apply(settings, b.event("refund.created", b.refund("re_l6", "ch_l6", 500), "l6_re", T + 5))
    found = row(settings, "refunds", "re_l6")
    assert found is not None and found["customer_id"] is None
    apply(settings, b.event("charge.succeeded", b.charge("ch_l6", "cus_l6"), "l6_ch", T))
    found = row(settings, "refunds", "re_l6")
    assert found is not None and found["customer_id"] == "cus_l6"


def test_an_invoice_s_subscription_at_2025_03_31_basil(settings: Settings) -> None:
    """Since basil the subscription is under `parent.subscription_details`; an invoice event
    processed before its subscription's still links them, and the grace counts."""
    cus, sub, inv = "cus_l8", "sub_l8", "in_l8"
    failed = b.invoice("current", inv, cus, sub, "open")
    assert "subscription" not in failed
    apply(settings, wrap("invoice.payment_failed", failed, "l8_fail", T + 10))
    apply(
        settings,
        b.event(
            "customer.subscription.updated",
            b.subscription("current", sub, cus, "past_due"),
            "l8_sub",
            T + 10,
            "current",
        ),
    )
    found = row(settings, "invoices", inv)
    assert found is not None and found["subscription_id"] == sub
    access = rows(
        settings,
        "SELECT * FROM customer_access_at(%s) WHERE customer_id = %s",
        (datetime.fromtimestamp(T + 11, UTC), cus),
    )
    assert [(a["has_access"], a["reason"]) for a in access] == [(True, "past_due_grace")]


def test_a_stale_invoice_event_still_fills_a_missing_subscription(settings: Settings) -> None:
    """A link, once named by any event, is kept: a newer snapshot that omits it (an API version
    that moved the field) does not lose it, and an older one that names it fills it."""
    cus, sub, inv = "cus_l9", "sub_l9", "in_l9"
    newer = b.invoice("current", inv, cus, None, "open")
    older = b.invoice("current", inv, cus, sub, "open")
    apply(settings, wrap("invoice.updated", newer, "l9_new", T + 10))
    apply(settings, wrap("invoice.finalized", older, "l9_old", T + 5))
    found = row(settings, "invoices", inv)
    assert found is not None
    assert (found["subscription_id"], found["source_event_id"]) == (sub, "l9_new")


def test_with_an_api_key_an_unseen_charge_is_read_from_stripe(settings: Settings) -> None:
    cus, ch = "cus_l10", "ch_l10"
    with fake_stripe() as api:
        api.put(f"/v1/charges/{ch}", b.charge(ch, cus))
        keyed = settings.with_overrides(
            stripe_api_key="sk_test_links", stripe_api_base=api.base_url
        )
        apply(keyed, b.event("charge.dispute.created", b.dispute("dp_l10", ch), "l10_dp", T))
    note = dispute_opened(keyed)
    assert (note["customer_id"], note["awaits_charge"]) == (cus, None)
    found = row(keyed, "charges", ch)
    assert found is not None and found["customer_id"] == cus
    dispute = row(keyed, "disputes", "dp_l10")
    assert dispute is not None and dispute["customer_id"] == cus


def test_the_charge_sends_the_notification_it_completes(settings: Settings) -> None:
    """Released by the charge, the notification is enqueued for delivery after that commit,
    not left for the sweeper's next look a minute later."""
    client = redis.Redis.from_url(settings.redis_url)
    key = f"{settings.redis_namespace}:notifications.msgs"
    try:
        apply(settings, b.event("charge.dispute.created", b.dispute("dp_l11", "ch_l11"), "l11", T))
        note = dispute_opened(settings)
        client.delete(key)  # the message sent after the dispute's commit, consumed
        apply(settings, b.event("charge.succeeded", b.charge("ch_l11", "cus_l11"), "l11_ch", T))
        sent = [orjson.loads(m)["args"][0] for m in client.hvals(key)]
    finally:
        client.close()
    assert sent == [[note["id"]]]


# Notifications awaiting nothing, sent (%(sent)s) or not: `n` of them from `start`.
OUTBOX = """
INSERT INTO notifications (event_id, kind, customer_id, payload, sent_at)
SELECT 'evt_outbox_' || i, 'payment_failed', 'cus_outbox', '{}',
       CASE WHEN %(sent)s THEN now() END
FROM generate_series(%(start)s::int, %(start)s::int + %(n)s - 1) AS i
"""


def test_a_charge_releases_its_notification_without_reading_the_unsent_outbox(
    settings: Settings,
) -> None:
    cus, ch = "cus_l4", "ch_l4"
    apply(settings, b.event("charge.dispute.created", b.dispute("dp_l4", ch), "l4_dp", T))
    with connect(settings.database_url) as conn:
        conn.autocommit = True
        # Statistics from when every notification was sent; since then, a catch-up after an
        # outage: the senders are behind (autovacuum has not analyzed the table yet).
        conn.execute(OUTBOX, {"sent": False, "start": 20_001, "n": 20_000})
        params = {
            **shapes.charge(b.charge(ch, cus)),
            "source_event_created": datetime.fromtimestamp(T + 1, UTC),
            "source_event_id": "evt_l4_ch",
            "source_rank": [],
            "account_id": None,
        }
        with conn.transaction(force_rollback=True):
            [explained] = conn.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + queries.UPSERT_CHARGE_AND_LINK,
                params,
            ).fetchall()
    [update] = [
        n
        for n in _nodes(explained["QUERY PLAN"][0]["Plan"])
        if n["Node Type"] == "ModifyTable" and n["Relation Name"] == "notifications"
    ]
    assert update["Actual Rows"] == 1  # the dispute's notification, released
    read = [n for n in _nodes(update) if "Index Name" in n]
    assert {n["Index Name"] for n in read} == {"notifications_awaiting"}
    assert update["Shared Hit Blocks"] + update["Shared Read Blocks"] < 40


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)
