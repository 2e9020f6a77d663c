"""The notifications outbox: one row per triggering event through duplicates and replays,
written with the state change, delivered once (claimed before sending), by the log transport or
SMTP, and re-enqueued by the sweep hook when its message is lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis

from shared.broker import make_broker
from shared.db import connect
from shared.settings import Settings
from tests.worker.mirror import builders as b
from tests.worker.mirror.fake_smtp import fake_smtp
from tests.worker.mirror.support import apply, process_pending, replay, rows, store
from worker.mirror import notifications
from worker.mirror.transports import Message
from worker.registry import REGISTRY

T = b.T0
EMAIL = "person@example.com"


def triggering_events() -> list[dict[str, Any]]:
    cus, sub = "cus_n1", "sub_n1"
    trialing = b.subscription("old", sub, cus, "trialing", trial_end=T + 3 * b.DAY)
    return [
        b.event("customer.created", b.customer(cus, email=EMAIL), "e_cus", T),
        b.event("customer.subscription.trial_will_end", trialing, "e_trial", T + 1),
        b.event("invoice.paid", b.invoice("old", "in_n1", cus, sub, "paid"), "e_paid", T + 2),
        b.event(
            "invoice.payment_action_required",
            b.invoice("old", "in_n2", cus, sub, "open"),
            "e_action",
            T + 3,
        ),
        b.event(
            "invoice.payment_failed", b.invoice("old", "in_n3", cus, sub, "open"), "e_fail", T + 4
        ),
        b.event("charge.succeeded", b.charge("ch_n1", cus), "e_ch", T + 5),
        b.event("charge.dispute.created", b.dispute("dp_n1", "ch_n1"), "e_dp", T + 6),
        b.event("charge.refunded", b.charge("ch_n1", cus, refunded_amount=1500), "e_refund", T + 7),
        b.event(
            "customer.subscription.deleted",
            b.subscription("old", sub, cus, "canceled"),
            "e_cancel",
            T + 8,
        ),
    ]


EXPECTED = {
    ("e_trial", "trial_ending"),
    ("e_paid", "payment_succeeded"),
    ("e_action", "payment_action_required"),
    ("e_fail", "payment_failed"),
    ("e_dp", "dispute_opened"),
    ("e_refund", "refund_issued"),
    ("e_cancel", "subscription_canceled"),
}


def outbox(settings: Settings) -> list[dict[str, Any]]:
    return rows(settings, "SELECT * FROM notifications ORDER BY id")


def test_exactly_one_per_triggering_event_through_duplicates_and_replays(
    settings: Settings,
) -> None:
    events = triggering_events()
    apply(settings, *events)
    first = outbox(settings)
    assert {(n["event_id"], n["kind"]) for n in first} == EXPECTED
    assert len(first) == len(EXPECTED)
    assert all(n["customer_id"] == "cus_n1" for n in first)

    # Duplicate deliveries are stored once, so nothing runs again; replays run the handlers again.
    assert store(settings, events) == set()
    assert process_pending(settings) == []
    for event in events:
        replay(settings, event["id"])
    assert outbox(settings) == first
    statuses = rows(settings, "SELECT DISTINCT status FROM stripe_events")
    assert statuses == [{"status": "processed"}]


def test_payloads_carry_what_the_customer_needs(settings: Settings) -> None:
    apply(settings, *triggering_events())
    by_kind = {n["kind"]: n["payload"] for n in outbox(settings)}
    failed = by_kind["payment_failed"]
    assert failed["grace_until"] == "2023-11-17T22:13:24+00:00"  # T + 4 s + 3 days
    assert failed["hosted_invoice_url"].endswith("/in_n3")
    assert by_kind["payment_action_required"]["hosted_invoice_url"].endswith("/in_n2")
    assert by_kind["payment_succeeded"]["amount_paid"] == 1500
    assert by_kind["trial_ending"]["trial_end"] == "2023-11-17T22:13:20+00:00"
    assert by_kind["dispute_opened"]["charge"] == "ch_n1"
    assert by_kind["refund_issued"]["amount_refunded"] == 1500
    assert by_kind["subscription_canceled"]["subscription"] == "sub_n1"
    assert EMAIL not in str(by_kind)


def test_a_rolled_back_event_leaves_no_notification(settings: Settings) -> None:
    def boom(tx: Any, event: Any) -> None:
        raise RuntimeError("later handler fails")

    REGISTRY.handles("invoice.paid")(boom)
    try:
        [outcome] = apply(settings, triggering_events()[2])
    finally:
        REGISTRY.unregister(boom)
    assert (outcome.status, outcome.error) == ("retry", "RuntimeError: later handler fails")
    assert outbox(settings) == []
    assert rows(settings, "SELECT count(*) AS n FROM invoices") == [{"n": 0}]


@pytest.fixture
def queue(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


def messages(client: redis.Redis, settings: Settings) -> list[list[int]]:
    """The notification ids of each delivery message waiting in the queue."""
    raw = client.hvals(f"{settings.redis_namespace}:notifications.msgs")
    return [list(orjson.loads(m)["args"][0]) for m in raw]


def queued(client: redis.Redis, settings: Settings) -> int:
    return sum(len(ids) for ids in messages(client, settings))


def test_after_commit_enqueues_delivery(settings: Settings, queue: redis.Redis) -> None:
    apply(settings, *triggering_events())
    ids = [i for found in messages(queue, settings) for i in found]
    assert sorted(ids) == sorted(r["id"] for r in outbox(settings))
    assert len(ids) == len(EXPECTED)
    # The notifications of one transaction travel in one message.
    assert len(messages(queue, settings)) < len(EXPECTED)


def test_a_delivery_message_sends_each_of_its_notifications_once(
    settings: Settings, queue: redis.Redis
) -> None:
    apply(settings, *triggering_events())
    ids = [r["id"] for r in outbox(settings)]
    assert sorted(notifications.deliver_many(settings, ids)) == sorted(ids)
    assert notifications.deliver_many(settings, ids) == []  # all claimed: none sent twice
    assert all(r["sent_at"] is not None for r in outbox(settings))


def test_delivery_claims_before_sending_and_sends_once(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    apply(settings, *triggering_events())
    ids = [n["id"] for n in outbox(settings)]
    assert all(notifications.deliver(settings, i) for i in ids)
    assert not any(notifications.deliver(settings, i) for i in ids)  # already claimed
    sent = outbox(settings)
    assert all(n["sent_at"] is not None and n["attempts"] == 1 for n in sent)
    logged = capsys.readouterr().out
    # The trial-ending notice is settled unsent: the subscription was canceled since.
    assert logged.count("notification.delivered") == len(ids) - 1
    assert [n["last_error"] for n in sent if n["kind"] == "trial_ending"] == [
        "not sent: the subscription is canceled"
    ]
    assert EMAIL not in logged


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[Message] = []

    def send(self, message: Message) -> str | None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError(f"mail relay down, refused {EMAIL}")
        self.sent.append(message)
        return None


def test_failed_send_is_released_and_retried(settings: Settings) -> None:
    apply(settings, triggering_events()[2])
    [note] = outbox(settings)
    flaky = Flaky(failures=1)
    with pytest.raises(notifications.DeliveryFailed):
        notifications.deliver(settings, note["id"], transport=flaky)
    [after] = outbox(settings)
    assert after["sent_at"] is None and after["attempts"] == 1
    assert after["last_error"] == "ConnectionError: mail relay down, refused ***@***"
    assert notifications.deliver(settings, note["id"], transport=flaky) is True
    assert notifications.deliver(settings, note["id"], transport=flaky) is False
    assert [m.kind for m in flaky.sent] == ["payment_succeeded"]
    assert [m.to for m in flaky.sent] == [None]  # no customer row with an address yet


def test_smtp_transport_sends_to_the_customer(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    apply(settings, *triggering_events())
    with fake_smtp() as box:
        smtp = settings.with_overrides(
            smtp_url=f"smtp://127.0.0.1:{box.port}?from=billing@shop.test"
        )
        for n in outbox(settings):
            assert notifications.deliver(smtp, n["id"]) is True
    assert len(box.messages) == len(EXPECTED) - 1  # not the trial's: canceled since
    assert {(s, tuple(r)) for s, r, _ in box.messages} == {("billing@shop.test", (EMAIL,))}
    bodies = "".join(body for _, _, body in box.messages)
    assert "Subject: Your payment failed" in bodies
    assert "https://invoice.stripe.com/i/acct_test/in_n2" in bodies
    assert EMAIL not in capsys.readouterr().out


def test_smtp_without_an_address_is_noted_not_retried(settings: Settings) -> None:
    apply(settings, triggering_events()[2])  # invoice.paid: the customer row is unknown
    [note] = outbox(settings)
    with fake_smtp() as box:
        smtp = settings.with_overrides(smtp_url=f"smtp://127.0.0.1:{box.port}")
        assert notifications.deliver(smtp, note["id"]) is True
    assert box.messages == []
    [after] = outbox(settings)
    assert after["sent_at"] is not None
    assert after["last_error"] == "not sent: the customer has no e-mail address"


def test_sweep_hook_requeues_stranded_notifications(settings: Settings, queue: redis.Redis) -> None:
    broker = make_broker(settings)
    apply(settings, *triggering_events())
    queue.delete(f"{settings.redis_namespace}:notifications.msgs")  # the messages are lost
    assert notifications.requeue_notifications_hook in REGISTRY.sweep_hooks
    assert notifications.requeue_stranded(settings, broker) == []  # younger than a minute
    with connect(settings.database_url) as conn:
        conn.execute(
            "UPDATE notifications SET created_at = created_at - interval '2 minutes', "
            "enqueued_at = enqueued_at - interval '2 minutes'"
        )
        conn.execute("UPDATE notifications SET sent_at = now() WHERE kind = 'trial_ending'")
        conn.commit()
    for hook in REGISTRY.sweep_hooks:
        if hook is notifications.requeue_notifications_hook:
            hook(settings, broker)
    assert queued(queue, settings) == len(EXPECTED) - 1
    # Just re-enqueued: the next pass leaves them alone.
    assert notifications.requeue_stranded(settings, broker) == []
    assert notifications.requeue_stranded(settings, broker, min_age=timedelta(0)) != []


def test_which_notices_exist_and_what_they_say_do_not_depend_on_arrival(
    settings: Settings, reference_settings: Settings
) -> None:
    """Two failed attempts of one invoice and its payment, delivered in order and backwards:
    the same rows, each failure notice with the grace end of the first failure; delivery then
    settles the failure notices unsent, as the invoice is paid."""
    cus, sub, inv = "cus_n9", "sub_n9", "in_n9"
    events = [
        b.event("invoice.payment_failed", b.invoice("old", inv, cus, sub, "open"), "n9_f1", T),
        b.event(
            "invoice.payment_failed",
            b.invoice("old", inv, cus, sub, "open", attempt_count=2),
            "n9_f2",
            T + b.DAY,
        ),
        b.event("invoice.paid", b.invoice("old", inv, cus, sub, "paid"), "n9_paid", T + 2 * b.DAY),
    ]
    for event in events:
        apply(settings, event)
    for event in reversed(events):
        apply(reference_settings, event)
    query = "SELECT event_id, kind, customer_id, payload FROM notifications ORDER BY event_id"
    in_order, backwards = rows(settings, query), rows(reference_settings, query)
    assert in_order == backwards
    assert [n["payload"].get("grace_until") for n in in_order] == [
        "2023-11-17T22:13:20+00:00",
        "2023-11-17T22:13:20+00:00",
        None,
    ]
    for n in rows(settings, "SELECT id FROM notifications"):
        assert notifications.deliver(settings, n["id"]) is True
    notes = rows(settings, "SELECT kind, last_error FROM notifications ORDER BY event_id")
    assert notes == [
        {"kind": "payment_failed", "last_error": "not sent: the invoice is paid"},
        {"kind": "payment_failed", "last_error": "not sent: the invoice is paid"},
        {"kind": "payment_succeeded", "last_error": None},
    ]
