"""The mirror inside the real processes: users' own handlers named in USER_HANDLERS run after
ours in the same transaction, once per invoice through duplicates and replays; a notification
whose message was lost is re-enqueued by the sweeper's hook and delivered by a worker."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis

from shared.broker import enqueue_events, make_broker
from shared.db import connect
from shared.settings import Settings
from tests.conftest import SECRET
from tests.procs import run_sweeper, run_web, run_worker, wait_until
from tests.support import sign
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply, rows

T = b.T0

CREATE_CREDITS = """
CREATE TABLE IF NOT EXISTS account_credits (
    invoice_id  text PRIMARY KEY,  -- the idempotency key: one credit per paid invoice
    customer_id text NOT NULL,
    amount      bigint NOT NULL,
    currency    text NOT NULL,
    event_id    text NOT NULL,
    credited_at timestamptz NOT NULL DEFAULT now()
)
"""


def post(base_url: str, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    response = httpx.post(
        f"{base_url}/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign(body, SECRET)},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def all_processed(settings: Settings, n: int) -> bool:
    found = rows(settings, "SELECT count(*) AS n FROM stripe_events WHERE status = 'processed'")
    return bool(found == [{"n": n}])


@pytest.mark.slow
def test_user_handler_credits_once_per_paid_invoice(
    settings: Settings, env: dict[str, str]
) -> None:
    with connect(settings.database_url) as conn:
        conn.execute(CREATE_CREDITS)
        conn.commit()
    paid = b.invoice("current", "in_credit_1", "cus_credit", "sub_credit", "paid", amount=4200)
    first = b.event("invoice.paid", paid, "evt_credit_1", T + 1, "current")
    # Stripe sends a second invoice.paid-like event for the same invoice (a new event id).
    again = b.event("invoice.paid", paid, "evt_credit_2", T + 2, "current")
    user_env = {**env, "USER_HANDLERS": "tests.worker.mirror.credit_example"}
    with run_web(env) as base_url, run_worker(user_env, processes=1, threads=2):
        for event in (first, first, again):
            post(base_url, event)
        wait_until(lambda: all_processed(settings, 2), timeout=30)
        # An operator replays the first event: back to pending, attempts 0, enqueued.
        with connect(settings.database_url) as conn:
            conn.execute(
                "UPDATE stripe_events SET status = 'pending', attempts = 0, processed_at = NULL, "
                "process_seq = NULL WHERE id = 'evt_credit_1'"
            )
            conn.commit()
        enqueue_events(make_broker(settings), ["evt_credit_1"])
        wait_until(lambda: all_processed(settings, 2), timeout=30)
    credits = rows(
        settings, "SELECT invoice_id, customer_id, amount, event_id FROM account_credits"
    )
    assert credits == [
        {
            "invoice_id": "in_credit_1",
            "customer_id": "cus_credit",
            "amount": 4200,
            "event_id": "evt_credit_1",
        }
    ]
    notes = rows(settings, "SELECT event_id, kind FROM notifications ORDER BY event_id")
    assert notes == [
        {"event_id": "evt_credit_1", "kind": "payment_succeeded"},
        {"event_id": "evt_credit_2", "kind": "payment_succeeded"},
    ]


@pytest.mark.slow
def test_lost_notification_message_is_requeued_by_the_sweeper(
    settings: Settings, env: dict[str, str]
) -> None:
    canceled = b.subscription("old", "sub_lost", "cus_lost", "canceled")
    apply(settings, b.event("customer.subscription.deleted", canceled, "evt_lost", T))
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert client.delete(f"{settings.redis_namespace}:notifications.msgs") == 1  # lost
    finally:
        client.close()
    with connect(settings.database_url) as conn:  # older than the sweeper's minute
        conn.execute(
            "UPDATE notifications SET created_at = created_at - interval '2 minutes', "
            "enqueued_at = enqueued_at - interval '2 minutes'"
        )
        conn.commit()

    def sent() -> bool:
        found = rows(settings, "SELECT sent_at IS NOT NULL AS sent, attempts FROM notifications")
        return bool(found == [{"sent": True, "attempts": 1}])

    with run_worker(env, processes=1, threads=2):
        assert not sent()
        with run_sweeper(env):
            wait_until(sent, timeout=30)
