"""Convergence through real processes: events delivered out of order, with duplicates, through
the real receiver (`python -m ingest`, signed requests) to real workers (`python -m worker`) end
with the same mirror as in-order delivery processed in a second database: 30 customers' simple
lifecycles (older and current shapes), and the lifecycles of the property test
(test_convergence_property.py) in a few fixed orders. The notifications they trigger are
delivered by the `deliver_notification` actor in those workers, once each."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from shared.db import connect
from shared.settings import Settings
from tests.conftest import SECRET
from tests.procs import run_web, run_worker, wait_until
from tests.support import sign
from tests.worker.mirror import builders as b
from tests.worker.mirror import lifecycles as lc
from tests.worker.mirror.convergence import deliverer, state
from tests.worker.mirror.support import process_pending, rows, store

CUSTOMERS = 30
TABLES = ("customers", "subscriptions", "invoices", "charges", "disputes", "refunds")
AT = "2030-01-01T00:00:00Z"
# Events processed after a later-created one of their key.
OUT_OF_ORDER = (
    "SELECT count(*) AS n FROM (SELECT created, lag(created) OVER w AS before "
    "FROM stripe_events WINDOW w AS (PARTITION BY ordering_key ORDER BY process_seq)) x "
    "WHERE created < before"
)


def snapshot(settings: Settings) -> dict[str, Any]:
    """Every mirror row (without our own `updated_at`), access decisions at a fixed time, and
    the notifications."""
    state: dict[str, Any] = {}
    for table in TABLES:
        found = rows(settings, f"SELECT * FROM {table} ORDER BY id")
        state[table] = [{k: v for k, v in r.items() if k != "updated_at"} for r in found]
    state["access"] = rows(
        settings, "SELECT * FROM customer_access_at(%s) ORDER BY customer_id", (AT,)
    )
    state["notifications"] = rows(
        settings,
        "SELECT event_id, kind, customer_id, payload FROM notifications ORDER BY event_id, kind",
    )
    return state


def deliveries(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    sent = events + rng.sample(events, k=round(len(events) * 0.3))
    rng.shuffle(sent)
    return sent


def post_all(base_url: str, events: list[dict[str, Any]]) -> list[bool]:
    duplicates = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for event in events:
            body = json.dumps(event).encode()
            response = client.post(
                "/webhooks/stripe",
                content=body,
                headers={
                    "Stripe-Signature": sign(body, SECRET),
                    "Content-Type": "application/json",
                },
            )
            assert response.status_code == 200, response.text
            duplicates.append(response.json()["duplicate"])
    return duplicates


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["old", "current"])
def test_shuffled_duplicated_delivery_converges_to_in_order(
    settings: Settings,
    reference_settings: Settings,
    env: dict[str, str],
    shape: b.Shape,
) -> None:
    events = [e for n in range(CUSTOMERS) for e in b.lifecycle(n, shape)]
    sent = deliveries(events, seed=5 if shape == "old" else 11)
    assert len(sent) - len(events) == round(len(events) * 0.3)

    with run_web(env) as base_url, run_worker(env, processes=2, threads=4):
        duplicates = post_all(base_url, sent)
        assert duplicates.count(False) == len(events)

        def finished() -> bool:
            [counts] = rows(
                settings,
                "SELECT count(*) FILTER (WHERE status = 'processed') AS done, count(*) AS n "
                "FROM stripe_events",
            )
            return bool(counts["done"] == counts["n"] == len(events))

        wait_until(finished, timeout=90, interval=0.2)

        def delivered() -> bool:
            [counts] = rows(
                settings,
                "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent, count(*) AS n "
                "FROM notifications",
            )
            return bool(counts["n"] == counts["sent"] == 3 * CUSTOMERS)

        wait_until(delivered, timeout=60, interval=0.2)

    # Shuffling reached the workers: events were processed out of creation order.
    [disorder] = rows(settings, OUT_OF_ORDER)
    assert disorder["n"] > CUSTOMERS

    # The reference: the same events, each once, stored and processed in creation order.
    for event in events:
        store(reference_settings, [event])
        process_pending(reference_settings)

    actual, expected = snapshot(settings), snapshot(reference_settings)
    for key in expected:
        assert actual[key] == expected[key], key

    # What the lifecycle must end in, whichever delivery: canceled, the failed invoice open.
    subs = {r["id"]: r for r in actual["subscriptions"]}
    assert len(subs) == CUSTOMERS
    assert {r["status"] for r in subs.values()} == {"canceled"}
    invoices = {r["id"]: r["status"] for r in actual["invoices"]}
    assert invoices["in_life007a"] == "paid" and invoices["in_life007b"] == "open"
    assert {r["reason"] for r in actual["access"]} == {"canceled"}
    kinds = sorted(r["kind"] for r in actual["notifications"])
    assert kinds == sorted(["payment_succeeded", "payment_failed", "subscription_canceled"] * 30)
    sent_once = rows(settings, "SELECT DISTINCT attempts FROM notifications")
    assert sent_once == [{"attempts": 1}]
    with connect(settings.database_url) as conn:
        late = conn.execute(
            "SELECT count(*) AS n FROM stripe_events e JOIN subscriptions s "
            "ON s.source_event_id = e.id WHERE e.type <> 'customer.subscription.deleted'"
        ).fetchone()
    assert late == {"n": 0}


def ties_reversed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stripe's order with every group of same-second events reversed: each tie arrives in the
    worst order."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        groups.setdefault(event["created"], []).append(event)
    return [e for created in sorted(groups) for e in reversed(groups[created])]


def lifecycle_orders() -> dict[str, list[dict[str, Any]]]:
    """Three copies of the lifecycles (their own ids), each sent in a fixed order of its own."""
    copies = {tag: [e for life in lc.all_lifecycles(tag) for e in life.events] for tag in "xyz"}
    return {
        "x": list(reversed(copies["x"])),
        "y": ties_reversed(copies["y"]),
        "z": deliveries(copies["z"], seed=13),
    }


@pytest.mark.slow
def test_lifecycles_in_fixed_orders_through_real_processes(
    settings: Settings, reference_settings: Settings, env: dict[str, str]
) -> None:
    """The lifecycles of the property test (test_convergence_property.py), sent reversed, with
    every same-second group reversed, and shuffled with duplicates, by three concurrent senders
    to the real receiver and two worker processes: the same end as in-order delivery, every
    notification to its customer, delivered (or settled as moot) once."""
    orders = lifecycle_orders()
    unique = {e["id"] for sent in orders.values() for e in sent}
    with run_web(env) as base_url, run_worker(env, processes=2, threads=4):
        with ThreadPoolExecutor(max_workers=3) as pool:
            answers = list(pool.map(lambda events: post_all(base_url, events), orders.values()))
        assert sum(a.count(False) for a in answers) == len(unique)  # stored once each

        def finished() -> bool:
            [counts] = rows(
                settings,
                "SELECT count(*) FILTER (WHERE status = 'processed') AS done FROM stripe_events",
            )
            return bool(counts["done"] == len(unique))

        wait_until(finished, timeout=90, interval=0.2)

        def delivered() -> bool:
            [left] = rows(settings, "SELECT count(*) AS n FROM notifications WHERE sent_at IS NULL")
            return bool(left["n"] == 0)

        wait_until(delivered, timeout=60, interval=0.2)

    [disorder] = rows(settings, OUT_OF_ORDER)
    assert disorder["n"] > 0  # the workers did see them out of order

    with deliverer(reference_settings) as reference:
        for tag in orders:
            for life in lc.all_lifecycles(tag):
                reference.one_at_a_time([(e, False) for e in life.events])
        expected = reference.state()
    with connect(settings.database_url) as conn:
        actual = state(conn)
    # A failure notice sent before an earlier failure of its invoice arrived names the grace end
    # known when it was sent: a later one, never an earlier one (unsent ones are corrected).
    for sent, first in zip(actual["notifications"], expected["notifications"], strict=True):
        if sent["kind"] == "payment_failed" and sent["payload"] != first["payload"]:
            assert sent["payload"]["grace_until"] > first["payload"]["grace_until"]
            sent["payload"]["grace_until"] = first["payload"]["grace_until"]
    for key in expected:
        assert actual[key] == expected[key], key
    notices = rows(settings, "SELECT customer_id, attempts, last_error FROM notifications")
    assert all(n["customer_id"] is not None and n["attempts"] == 1 for n in notices)
    moot = sorted(n["last_error"] for n in notices if n["last_error"])
    assert set(moot) <= {
        "not sent: the invoice is paid",
        "not sent: the subscription is active",
        "not sent: the subscription is past_due",
    }
