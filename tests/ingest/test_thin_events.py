"""Thin event notifications (`"object": "v2.core.event"`) at `POST /webhooks/stripe`: signed like
snapshot events, stored as `kind = 'thin'` and answered at once; refused only when they are not
events at all. Real PostgreSQL and Redis, Stripe's real signing scheme."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import stripe

from ingest.app import create_app
from shared.settings import Settings
from tests.conftest import SECRET
from tests.ingest.helpers import Stored, deliver, serve, signed
from tests.support import stripe_python_thin_events, thin_event

pytestmark = pytest.mark.anyio


def paid(event_id: str = "evt_thin_paid", **extra: Any) -> dict[str, Any]:
    return thin_event(
        "v1.invoice.paid",
        "invoice",
        "in_thin_1",
        event_id,
        snapshot_event="evt_snapshot_paid",
        context="acct_1Connected",
        **extra,
    )


async def test_a_thin_event_is_stored_as_thin_keyed_by_its_related_object(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = paid()
    response = await deliver(client, evt)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    row = stored.rows()[evt["id"]]
    assert (row["kind"], row["type"], row["status"]) == ("thin", "v1.invoice.paid", "pending")
    assert row["created"] == datetime(2026, 10, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert row["ordering_key"] == "in_thin_1"
    assert row["snapshot_event"] == "evt_snapshot_paid"
    assert row["account"] == "acct_1Connected"
    assert (row["endpoint"], row["api_version"], row["livemode"]) == (None, None, False)
    assert row["payload"] == evt
    assert await stored.wait_queued(1) == [evt["id"]]


async def test_a_thin_event_without_twin_or_account_keeps_them_null(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = thin_event("v1.customer.updated", "customer", "cus_thin_2", "evt_thin_plain")
    assert (await deliver(client, evt)).status_code == 200
    row = stored.rows()[evt["id"]]
    assert (row["ordering_key"], row["snapshot_event"], row["account"]) == (
        "cus_thin_2",
        None,
        None,
    )


async def test_a_redelivered_thin_event_is_a_duplicate(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = paid("evt_thin_twice")
    first, second = await deliver(client, evt), await deliver(client, evt)
    assert first.json()["duplicate"] is False
    assert second.status_code == 200
    assert second.json() == {"received": True, "duplicate": True, "id": evt["id"]}
    assert list(stored.rows()) == [evt["id"]]


def _without_related(evt: dict[str, Any]) -> dict[str, Any]:
    del evt["related_object"]
    return evt


@pytest.mark.parametrize(
    "broken",
    [
        _without_related,
        lambda e: {**e, "related_object": None},
        lambda e: {**e, "related_object": "in_thin_1"},
        lambda e: {**e, "related_object": {"type": "invoice"}},  # neither id nor url
        lambda e: {**e, "related_object": {**e["related_object"], "id": "in_" + "x" * 300}},
        lambda e: {**e, "created": 1_790_000_000},  # a unix time is a snapshot's, not a thin's
        lambda e: {**e, "created": "2026-10-01T12:00:00"},  # no offset
        lambda e: {**e, "created": "2026-10-01"},  # no time
        lambda e: {**e, "created": "yesterday"},
        lambda e: {**e, "created": "9999-12-31T23:59:59-01:00"},  # past year 9999 in UTC
        lambda e: {**e, "id": None},
        lambda e: {**e, "type": ""},
        lambda e: {**e, "snapshot_event": "evt_" + "s" * 300},
        lambda e: {**e, "context": "acct_\u0000"},
    ],
    ids=lambda fn: getattr(fn, "__name__", "case"),
)
async def test_a_thin_event_that_is_not_an_event_is_malformed_and_not_stored(
    client: httpx.AsyncClient, stored: Stored, broken: Any
) -> None:
    response = await deliver(client, broken(paid("evt_thin_broken")))
    assert response.status_code == 400
    assert response.json() == {"error": "malformed_event"}
    assert stored.rows() == {}


async def test_a_thin_event_of_the_other_mode_is_refused(
    settings: Settings, stored: Stored
) -> None:
    async with serve(create_app(settings.with_overrides(stripe_livemode=False))) as client:
        response = await deliver(client, paid("evt_thin_live", livemode=True))
    assert response.status_code == 400
    assert response.json() == {"error": "livemode_mismatch"}
    assert stored.rows() == {}


async def test_a_thin_event_signed_with_another_secret_is_refused(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    response = await deliver(client, paid("evt_thin_forged"), secret="whsec_someone_else_0123456")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_signature"}
    assert stored.rows() == {}


@pytest.mark.parametrize("fixture", stripe_python_thin_events(), ids=lambda p: p.stem)
async def test_every_thin_event_of_stripe_pythons_tests_is_accepted(
    client: httpx.AsyncClient, stored: Stored, fixture: Path
) -> None:
    body = fixture.read_bytes()
    notification = json.loads(body)
    _, headers = signed(body)
    # Stripe's own SDK reads the same signed body as a thin event notification...
    parsed = stripe.StripeClient("sk_test_fixture").parse_event_notification(
        body, headers["Stripe-Signature"], SECRET
    )

    response = await client.post("/webhooks/stripe", content=body, headers=headers)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "id": parsed.id}
    row = stored.rows()[parsed.id]
    # ...and what we stored agrees with what it read.
    assert (row["kind"], row["type"], row["livemode"]) == ("thin", parsed.type, parsed.livemode)
    assert row["created"] == datetime.fromisoformat(parsed.created)
    assert row["account"] == str(parsed.context)
    assert row["ordering_key"] == notification["related_object"]["id"]
    assert row["payload"] == orjson.loads(body)
    assert row["status"] == "pending"
