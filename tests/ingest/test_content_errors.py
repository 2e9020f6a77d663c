"""Signed events whose content cannot be stored are 400 `malformed_event`, and fail alone.

Ids and ordering keys over 255 characters are refused before the database. A row PostgreSQL
refuses for its size or content (SQLSTATE classes 54, 23, 22) fails only its own request, even
inside a grouped INSERT: the other requests of that batch are answered 200 and stored. The log
line of such a refusal names the SQLSTATE, never a value of the payload.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.ingest.helpers import LOCK, Stored, deliver, serve, signed, waiting_backends
from tests.ingest.test_process import web_process
from tests.support import unique_event

pytestmark = pytest.mark.anyio

SUBSCRIPTION = "stripe-ruby-mock__customer.subscription.updated__1"
# Values that must never reach a log line: what a payment method's payload carries.
FINGERPRINT = "Xt5EWLLDS7FJjR1c"
EMAIL = "poison.owner@example.com"
TAINTED = "tainted-7c1e"  # the description value the check constraint refuses


def event(suffix: str) -> dict[str, Any]:
    return unique_event(SUBSCRIPTION, suffix)


@pytest.mark.parametrize(
    ("where", "length", "status"),
    [
        ("id", 255, 200),
        ("id", 256, 400),
        ("id", 3000, 400),  # past btree's ~2.7 KB: was a 503 on every try
        ("customer", 255, 200),
        ("customer", 256, 400),
        ("customer", 3000, 400),
    ],
)
async def test_an_id_or_ordering_key_over_255_characters_is_malformed(
    client: httpx.AsyncClient, stored: Stored, where: str, length: int, status: int
) -> None:
    evt = event("long")
    value = secrets.token_hex(length)[:length]  # incompressible: btree may compress a repeat
    if where == "id":
        evt["id"] = value
    else:
        evt["data"]["object"]["customer"] = value
    response = await deliver(client, evt)

    assert response.status_code == status
    if status == 400:
        assert response.json() == {"error": "malformed_event"}
        assert stored.rows() == {}
        assert stored.queued() == []
    else:
        assert response.json()["duplicate"] is False
        key = value if where == "customer" else evt["data"]["object"]["customer"]
        assert stored.rows()[evt["id"]]["ordering_key"] == key


def _poison_description(kind: str) -> str:
    if kind == "index row too large (54000)":
        return secrets.token_hex(4000)  # 8000 characters in an index on the description
    return TAINTED


POISONS = {
    # A size PostgreSQL refuses: an index entry over btree's limit.
    "index row too large (54000)": (
        "CREATE INDEX test_description ON stripe_events "
        "((payload -> 'data' -> 'object' ->> 'description'))"
    ),
    # An integrity rule the row breaks (not the id conflict, which is a duplicate).
    "check violation (23514)": (
        "ALTER TABLE stripe_events ADD CONSTRAINT test_no_poison "
        "CHECK (payload -> 'data' -> 'object' ->> 'description' IS DISTINCT FROM '" + TAINTED + "')"
    ),
    # A value jsonb cannot hold, though orjson reads it.
    "numeric out of range (22003)": None,
}


def poison_body(kind: str, suffix: str) -> bytes:
    evt = event(suffix)
    evt["data"]["object"]["description"] = _poison_description(kind)
    evt["data"]["object"]["fingerprint"] = FINGERPRINT
    evt["data"]["object"]["receipt_email"] = EMAIL
    body = orjson.dumps(evt)
    if kind == "numeric out of range (22003)":
        body = body.replace(b'"quantity":1', b'"quantity":1e-1000000')
        assert b"1e-1000000" in body
    return body


@pytest.mark.parametrize("kind", list(POISONS))
async def test_a_row_postgresql_refuses_fails_only_its_request_in_a_batch(
    settings: Settings,
    stored: Stored,
    database_url: str,
    hold: psycopg.Connection[tuple[object, ...]],
    kind: str,
) -> None:
    if POISONS[kind] is not None:
        hold.execute(POISONS[kind])
    app = create_app(settings.with_overrides(intake_batch_window_ms=300.0))
    blocker = event("blocker")
    blocker["id"] = "evt_hold_blocker"
    good = [event(f"good{i}") for i in range(3)]
    poison = poison_body(kind, "poison")

    async with serve(app) as client:
        # One batch in flight (held by the test's lock): the next four collect into one INSERT.
        held = asyncio.ensure_future(deliver(client, blocker))
        await waiting_backends(hold, 1)
        answers = await asyncio.gather(
            deliver(client, good[0]),
            client.post("/webhooks/stripe", content=poison, headers=signed(poison)[1]),
            deliver(client, good[1]),
            deliver(client, good[2]),
        )
        hold.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
        assert (await held).status_code == 200
        metrics = (await client.get("/metrics")).text
        queued = await stored.wait_queued(4)

    assert "stripe_intake_batch_rows_count 2.0" in metrics  # the blocker, then all four at once
    assert "stripe_intake_batch_rows_sum 5.0" in metrics
    statuses = [r.status_code for r in answers]
    assert statuses == [200, 400, 200, 200]
    assert answers[1].json() == {"error": "malformed_event"}
    assert [answers[i].json()["duplicate"] for i in (0, 2, 3)] == [False] * 3
    expected = {e["id"] for e in [blocker, *good]}
    assert set(stored.rows()) == expected
    assert sorted(queued) == sorted(expected)


def test_the_log_of_a_refused_row_names_its_sqlstate_and_no_payload_value(
    env: dict[str, str], stored: Stored, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(POISONS["check violation (23514)"])
    poison = poison_body("check violation (23514)", "logged")
    goods = [orjson.dumps(event(f"logged{i}")) for i in range(6)]
    with web_process({**env, "LOG_LEVEL": "info", "INTAKE_BATCH_WINDOW_MS": "50"}) as (
        base_url,
        web,
    ):
        alone = httpx.post(f"{base_url}/webhooks/stripe", content=poison, headers=signed(poison)[1])
        # And in company: concurrent requests, likely grouped with the poison.
        answers: dict[int, int] = {}

        def post(i: int, body: bytes) -> None:
            answers[i] = httpx.post(
                f"{base_url}/webhooks/stripe", content=body, headers=signed(body)[1]
            ).status_code

        threads = [
            threading.Thread(target=post, args=(i, body)) for i, body in enumerate([poison, *goods])
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    logs = web.logs()

    assert alone.status_code == 400
    assert alone.json() == {"error": "malformed_event"}
    assert answers == {0: 400, **{i: 200 for i in range(1, 7)}}
    assert len(stored.rows()) == 6
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    rejected = [r for r in records if r["event"] == "intake.row_rejected"]
    assert rejected, logs
    assert all("23514" in r["error"] for r in rejected)
    assert FINGERPRINT not in logs
    assert EMAIL not in logs
    assert "Failing row" not in logs
    assert TAINTED not in logs


async def test_the_text_backslash_u0000_is_not_a_nul_and_is_stored(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    evt = event("backslash")
    evt["data"]["object"]["description"] = "C:\\u0000 is a path, not a NUL"
    body = orjson.dumps(evt)
    assert b"\\\\u0000" in body  # an escaped backslash, then the letters u0000
    response = await deliver(client, body)

    assert response.status_code == 200
    assert stored.rows()[evt["id"]]["payload"] == evt
