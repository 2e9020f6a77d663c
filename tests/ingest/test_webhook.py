"""`POST /webhooks/stripe`, row by row of the contract's HTTP table, against real PostgreSQL and
Redis with Stripe's real signing scheme. Each test checks the answer and what was stored."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.conftest import OTHER_SECRET, SECRET
from tests.ingest.helpers import Stored, deliver, serve, signed
from tests.support import sign, unique_event

pytestmark = pytest.mark.anyio

SUBSCRIPTION = "stripe-ruby-mock__customer.subscription.updated__1"


def event(suffix: str, name: str = SUBSCRIPTION) -> dict[str, Any]:
    return unique_event(name, suffix)


async def test_a_new_event_is_committed_enqueued_and_answered(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = event("new")
    response = await deliver(client, evt)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    row = stored.rows()[evt["id"]]
    assert row["type"] == "customer.subscription.updated"
    assert row["created"] == datetime.fromtimestamp(evt["created"], tz=UTC)
    assert row["livemode"] is False
    assert row["ordering_key"] == "cus_00000000000000"
    assert row["payload"] == evt
    assert (row["status"], row["attempts"], row["process_seq"]) == ("pending", 0, None)
    assert row["enqueued_at"] is not None
    assert await stored.wait_queued(1) == [evt["id"]]


async def test_a_redelivery_answers_duplicate_and_stores_nothing_new(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = event("again")
    first = await deliver(client, evt)
    received_at = stored.rows()[evt["id"]]["received_at"]
    second = await deliver(client, evt)

    assert first.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    assert second.status_code == 200
    assert second.json() == {"received": True, "duplicate": True, "id": evt["id"]}
    rows = stored.rows()
    assert list(rows) == [evt["id"]]
    assert rows[evt["id"]]["received_at"] == received_at
    assert await stored.wait_queued(2, timeout=1) == [evt["id"]]


async def test_no_signature_header_is_refused(client: httpx.AsyncClient, stored: Stored) -> None:
    response = await client.post("/webhooks/stripe", content=orjson.dumps(event("nosig")))

    assert response.status_code == 400
    assert response.json() == {"error": "missing_signature"}
    assert stored.rows() == {}
    assert stored.queued() == []


@pytest.mark.parametrize(
    "tamper",
    ["other secret", "changed body", "no v1", "garbage header", "empty header", "not utf-8"],
)
async def test_a_signature_that_matches_no_secret_is_refused(
    client: httpx.AsyncClient, stored: Stored, tamper: str
) -> None:
    body = orjson.dumps(event("badsig"))
    header = sign(body, SECRET)
    if tamper == "other secret":
        header = sign(body, "whsec_not_ours_123456")
    elif tamper == "changed body":
        body = body.replace(b"cus_00000000000000", b"cus_11111111111111")
    elif tamper == "no v1":
        header = header.replace("v1=", "v0=")
    elif tamper == "garbage header":
        header = "hello"
    elif tamper == "empty header":
        header = ""
    elif tamper == "not utf-8":
        body = body[:-1] + b'"\xff"}'
        header = sign(body, SECRET)
    response = await client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
    )

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_signature"}
    assert stored.rows() == {}
    assert stored.queued() == []


async def test_either_of_two_rotating_secrets_signs(settings: Settings, stored: Stored) -> None:
    rotating = settings.with_overrides(webhook_secrets=(SECRET, OTHER_SECRET))
    old, new, foreign = event("old-secret"), event("new-secret"), event("foreign")
    async with serve(create_app(rotating)) as client:
        by_old = await deliver(client, old, SECRET)
        by_new = await deliver(client, new, OTHER_SECRET)
        by_foreign = await deliver(client, foreign, "whsec_someone_else_42")
        queued = await stored.wait_queued(2)

    assert by_old.json() == {"received": True, "duplicate": False, "id": old["id"]}
    assert by_new.json() == {"received": True, "duplicate": False, "id": new["id"]}
    assert by_foreign.status_code == 400
    assert by_foreign.json() == {"error": "invalid_signature"}
    assert set(stored.rows()) == {old["id"], new["id"]}
    assert sorted(queued) == sorted([old["id"], new["id"]])


async def test_a_timestamp_outside_the_tolerance_is_refused_and_a_fresh_one_accepted(
    client: httpx.AsyncClient, stored: Stored, settings: Settings
) -> None:
    evt = event("replayed")
    now = int(time.time())
    stale = await deliver(client, evt, timestamp=now - settings.webhook_tolerance - 5)

    assert stale.status_code == 400
    assert stale.json() == {"error": "invalid_signature"}
    assert stored.rows() == {}

    fresh = await deliver(client, evt, timestamp=now - settings.webhook_tolerance + 30)
    assert fresh.status_code == 200
    assert fresh.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    assert list(stored.rows()) == [evt["id"]]
    assert await stored.wait_queued(1) == [evt["id"]]


async def test_a_header_with_several_v1_signatures_is_accepted_when_one_matches(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = event("multi-v1")
    body = orjson.dumps(evt)
    t = int(time.time())
    ours = sign(body, SECRET, t).split(",")[1]
    theirs = sign(body, "whsec_rolled_out_secret_1", t).split(",")[1]
    header = f"t={t},{theirs},v0=deadbeef,{ours}"
    response = await client.post(
        "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
    )

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    assert list(stored.rows()) == [evt["id"]]
    assert await stored.wait_queued(1) == [evt["id"]]


def _malformed(kind: str) -> bytes:
    evt = event("malformed")
    if kind == "not json":
        return b"this is not json"
    if kind == "json array":
        return orjson.dumps([evt])
    if kind == "empty body":
        return b""
    if kind == "NUL character":
        evt["data"]["object"]["description"] = "a\x00b"
        return orjson.dumps(evt)
    if kind == "impossible created":
        evt["created"] = 10**18
        return orjson.dumps(evt)
    field, value = {
        "no id": ("id", None),
        "no type": ("type", None),
        "no created": ("created", None),
        "created as text": ("created", "1600000000"),
        "no data.object": ("data", {"previous_attributes": {}}),
        "data.object not an object": ("data", {"object": "sub_123"}),
    }[kind]
    if value is None:
        del evt[field]
    else:
        evt[field] = value
    return orjson.dumps(evt)


@pytest.mark.parametrize(
    "kind",
    [
        "not json",
        "json array",
        "empty body",
        "no id",
        "no type",
        "no created",
        "created as text",
        "no data.object",
        "data.object not an object",
        "NUL character",
        "impossible created",
    ],
)
async def test_a_signed_body_that_is_not_a_stripe_event_is_refused(
    client: httpx.AsyncClient, stored: Stored, kind: str
) -> None:
    body, headers = signed(_malformed(kind))
    response = await client.post("/webhooks/stripe", content=body, headers=headers)

    assert response.status_code == 400
    assert response.json() == {"error": "malformed_event"}
    assert stored.rows() == {}
    assert stored.queued() == []


async def test_a_signed_event_postgresql_refuses_is_malformed_and_not_retried_forever(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    # orjson reads 1e-1000000 as 0.0; jsonb's numeric cannot hold it (SQLSTATE 22003).
    evt = event("numeric")
    body = orjson.dumps(evt).replace(b'"quantity":1', b'"quantity":1e-1000000')
    assert b"1e-1000000" in body
    response = await client.post("/webhooks/stripe", content=body, headers=signed(body)[1])

    assert response.status_code == 400
    assert response.json() == {"error": "malformed_event"}
    assert stored.rows() == {}
    assert stored.queued() == []


async def test_a_body_over_the_limit_is_refused_and_one_at_the_limit_accepted(
    settings: Settings, stored: Stored
) -> None:
    evt = event("limit")
    body = orjson.dumps(evt)
    limited = settings.with_overrides(max_body_bytes=len(body))
    async with serve(create_app(limited)) as client:
        at_limit = await deliver(client, body)
        bigger = body[:-1] + b"  }"
        over = await client.post("/webhooks/stripe", content=bigger, headers=signed(bigger)[1])
        queued = await stored.wait_queued(1)

    assert at_limit.status_code == 200
    assert over.status_code == 413
    assert over.json() == {"error": "payload_too_large"}
    assert list(stored.rows()) == [evt["id"]]
    assert queued == [evt["id"]]


async def test_fifty_concurrent_deliveries_of_one_event_store_one_row_and_one_message(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = event("storm")
    body, headers = signed(evt)
    responses = await asyncio.gather(
        *(client.post("/webhooks/stripe", content=body, headers=headers) for _ in range(50))
    )

    assert [r.status_code for r in responses] == [200] * 50
    answers = [r.json() for r in responses]
    assert all(a["id"] == evt["id"] and a["received"] is True for a in answers)
    assert sum(1 for a in answers if a["duplicate"] is False) == 1
    assert list(stored.rows()) == [evt["id"]]
    assert await stored.wait_queued(2, timeout=1.5) == [evt["id"]]


async def test_concurrent_distinct_events_are_all_stored_and_enqueued_once(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    events = [event(f"crowd{i}") for i in range(60)]
    responses = await asyncio.gather(*(deliver(client, e) for e in events))

    assert [r.json() for r in responses] == [
        {"received": True, "duplicate": False, "id": e["id"]} for e in events
    ]
    assert set(stored.rows()) == {e["id"] for e in events}
    queued = await stored.wait_queued(60)
    assert sorted(queued) == sorted(e["id"] for e in events)


async def test_other_paths_and_methods_are_not_5xx(client: httpx.AsyncClient) -> None:
    assert (await client.get("/webhooks/stripe")).status_code == 405
    assert (await client.post("/nowhere")).status_code == 404
    assert (await client.get("/healthz")).json() == {"status": "ok"}
