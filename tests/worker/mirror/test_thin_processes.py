"""Thin events, named endpoints and Connect through the real processes (`python -m ingest`,
`python -m worker`) and a fake Stripe API on 127.0.0.1: what comes in on `/webhooks/stripe/connect`
is stored with its endpoint and its mirror rows with their account; a thin event and its
snapshot twin, sent to different endpoints, notify once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.conftest import SECRET
from tests.procs import run_web, run_worker, wait_until
from tests.support import sign, thin_event
from tests.worker.mirror import builders as b
from tests.worker.mirror.fake_stripe import FakeStripe, fake_stripe
from tests.worker.mirror.support import rows

CONNECT_SECRET = "whsec_test_connect_0123456789"
ACCOUNT = "acct_1Connected"


@pytest.fixture
def api() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


def post(base_url: str, path: str, event: dict[str, Any], secret: str) -> httpx.Response:
    body = json.dumps(event).encode()
    return httpx.post(
        f"{base_url}{path}", content=body, headers={"Stripe-Signature": sign(body, secret)}
    )


def finished(settings: Settings, n: int) -> bool:
    done = rows(
        settings,
        "SELECT count(*) AS n FROM stripe_events WHERE status IN ('processed', 'ignored')",
    )
    return bool(done == [{"n": n}])


@pytest.mark.slow
def test_connect_endpoint_thin_events_and_twins_through_web_and_worker(
    settings: Settings, env: dict[str, str], api: FakeStripe
) -> None:
    now = int(time.time())
    sub = b.subscription("current", "sub_p1", "cus_p1", "active")
    paid = b.invoice("current", "in_p1", "cus_p1", "sub_p1", "paid", amount=990)
    api.put("/v1/subscriptions/sub_p1", sub)
    api.put("/v1/invoices/in_p1", paid)
    # A connected account's snapshot event, as the Connect endpoint receives it...
    updated = b.event("customer.subscription.updated", sub, "evt_p_sub", now, "current")
    updated["account"] = ACCOUNT
    # ...a thin v1.invoice.paid for the same account, and its snapshot twin on the default one.
    snapshot = b.event("invoice.paid", paid, "evt_p_paid", now, "current")
    snapshot["account"] = ACCOUNT
    thin = thin_event(
        "v1.invoice.paid",
        "invoice",
        "in_p1",
        "evt_p_thin",
        created=datetime.now(UTC).isoformat(),
        snapshot_event="evt_p_paid",
        context=ACCOUNT,
    )
    meter = thin_event(
        "v1.billing.meter.error_report_triggered", "billing.meter", "mtr_p1", "evt_p_meter"
    )
    web_env = {**env, "STRIPE_WEBHOOK_SECRET_CONNECT": CONNECT_SECRET}
    worker_env = {**env, "STRIPE_API_KEY": "sk_test_thin", "STRIPE_API_BASE": api.base_url}
    with run_web(web_env) as base_url, run_worker(worker_env, processes=1, threads=2):
        # The default endpoint's secret is refused at the Connect endpoint, and vice versa.
        refused = post(base_url, "/webhooks/stripe/connect", updated, SECRET)
        assert (refused.status_code, refused.json()) == (400, {"error": "invalid_signature"})
        refused = post(base_url, "/webhooks/stripe", updated, CONNECT_SECRET)
        assert refused.status_code == 400
        unknown = post(base_url, "/webhooks/stripe/platform", updated, CONNECT_SECRET)
        assert (unknown.status_code, unknown.json()) == (404, {"error": "unknown_endpoint"})

        for path, event, secret in (
            ("/webhooks/stripe/connect", updated, CONNECT_SECRET),
            ("/webhooks/stripe/connect", thin, CONNECT_SECRET),
            ("/webhooks/stripe", snapshot, SECRET),
            ("/webhooks/stripe", meter, SECRET),
        ):
            response = post(base_url, path, event, secret)
            assert response.status_code == 200, response.text
        wait_until(lambda: finished(settings, 4), timeout=60)

    events = {
        r["id"]: r
        for r in rows(settings, "SELECT id, kind, endpoint, account, status FROM stripe_events")
    }
    assert {i: (e["kind"], e["endpoint"], e["status"]) for i, e in events.items()} == {
        "evt_p_sub": ("snapshot", "connect", "processed"),
        "evt_p_thin": ("thin", "connect", "processed"),
        "evt_p_paid": ("snapshot", None, "processed"),
        "evt_p_meter": ("thin", None, "ignored"),
    }
    assert events["evt_p_thin"]["account"] == ACCOUNT
    mirrored = rows(
        settings,
        "SELECT 'subscriptions' AS t, id, account_id, status FROM subscriptions"
        " UNION ALL SELECT 'invoices', id, account_id, status FROM invoices ORDER BY 1",
    )
    assert mirrored == [
        {"t": "invoices", "id": "in_p1", "account_id": ACCOUNT, "status": "paid"},
        {"t": "subscriptions", "id": "sub_p1", "account_id": ACCOUNT, "status": "active"},
    ]
    notices = rows(settings, "SELECT kind, dedupe_key, customer_id FROM notifications")
    assert notices == [
        {"kind": "payment_succeeded", "dedupe_key": "evt_p_paid", "customer_id": "cus_p1"}
    ]
    # The meter's thin event has no handler: never read from Stripe.
    assert not any("mtr_p1" in path for path, _ in api.requests)
    thin_reads = [
        h for (path, _), h in zip(api.requests, api.headers, strict=True) if "in_p1" in path
    ]
    assert thin_reads and all(h.get("stripe-account") == ACCOUNT for h in thin_reads)
