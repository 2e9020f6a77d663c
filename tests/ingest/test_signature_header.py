"""Hostile `Stripe-Signature` headers and timestamps: always 400 `invalid_signature`, never 5xx,
nothing stored. Through the real app with Stripe's real signing scheme."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.conftest import SECRET
from tests.ingest.helpers import Stored, deliver
from tests.support import sign, unique_event

pytestmark = pytest.mark.anyio

EVENT = "stripe-ruby-mock__customer.subscription.updated__1"


def _body(suffix: str) -> bytes:
    return orjson.dumps(unique_event(EVENT, suffix))


def _garbage(body: bytes) -> dict[str, bytes]:
    now = int(time.time())
    good = sign(body, SECRET, now).encode()
    mac = good.split(b"v1=")[1]
    return {
        "non-ascii v1, old t": "t=1,v1=é".encode(),
        "non-ascii v1, fresh t": f"t={now},v1=é".encode(),
        "latin-1 byte in v1": f"t={now},v1=".encode() + b"\xe9" * 64,
        "non-ascii digits in t": "t=\u0661\u0662,v1=".encode() + mac,
        "t without a value": b"t,v1=" + mac,
        "v1 without a value": f"t={now},v1".encode(),
        "t not a number": b"t=soon,v1=" + mac,
        "negative t": b"t=-5,v1=" + mac,
        "t with 5000 digits": b"t=" + b"9" * 5000 + b",v1=" + mac,
        "t with 400 digits": b"t=" + b"9" * 400 + b",v1=" + mac,
        "only commas": b",,,,",
        "only equals": b"====",
        "reversed v1": f"t={now},v1=".encode()
        + sign(body, SECRET, now).split("v1=")[1][::-1].encode(),
        "control characters": f"t={now},\tv1=".encode() + mac,
    }


CASES = list(_garbage(b"{}"))


@pytest.mark.parametrize("case", CASES)
async def test_a_garbled_signature_header_is_refused_with_400(
    client: httpx.AsyncClient, stored: Stored, case: str
) -> None:
    body = _body("garbled")
    header = _garbage(body)[case]
    response = await client.post(
        "/webhooks/stripe", content=body, headers=[(b"Stripe-Signature", header)]
    )

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_signature"}
    assert stored.rows() == {}
    assert stored.queued() == []


async def test_a_good_signature_beside_a_non_ascii_one_is_accepted(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    body = _body("beside")
    t, mac = sign(body, SECRET).split(",")
    header = f"{t},v1=é,{mac}".encode()
    response = await client.post(
        "/webhooks/stripe", content=body, headers=[(b"Stripe-Signature", header)]
    )

    assert response.status_code == 200
    assert list(stored.rows()) == [orjson.loads(body)["id"]]


async def test_a_timestamp_beyond_the_tolerance_in_the_future_is_refused(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    body = _body("future")
    now = int(time.time())
    ahead = await deliver(client, body, timestamp=now + 300 + 5)
    far_ahead = await deliver(client, body, timestamp=now + 10**9)

    assert ahead.status_code == far_ahead.status_code == 400
    assert ahead.json() == far_ahead.json() == {"error": "invalid_signature"}
    assert stored.rows() == {}

    # A sender's clock a little ahead of ours is within the tolerance.
    slightly = await deliver(client, body, timestamp=now + 60)
    assert slightly.status_code == 200
    assert list(stored.rows()) == [orjson.loads(body)["id"]]
