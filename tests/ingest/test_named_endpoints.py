"""Named endpoints: `POST /webhooks/stripe/<name>` for each `STRIPE_WEBHOOK_SECRET_<NAME>`,
verified with that endpoint's secrets only, the name stored in `endpoint`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.conftest import SECRET
from tests.ingest.helpers import Stored, deliver, serve, signed
from tests.support import thin_event, unique_event

pytestmark = pytest.mark.anyio

CONNECT_SECRET = "whsec_test_connect_0123456789"
CONNECT_ROTATED = "whsec_test_connect_rotated_987654"
BILLING_SECRET = "whsec_test_billing_0123456789"


@pytest.fixture
async def named(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The receiver with the default endpoint and two named ones (`connect` rotating)."""
    settings = Settings.from_env(
        environ={
            **env,
            "STRIPE_WEBHOOK_SECRET_CONNECT": f"{CONNECT_SECRET},{CONNECT_ROTATED}",
            "STRIPE_WEBHOOK_SECRET_BILLING": BILLING_SECRET,
        },
        env_file=None,
    )
    async with serve(create_app(settings)) as client:
        yield client


def connected_event(suffix: str) -> dict[str, Any]:
    evt = unique_event("stripe-ruby-mock__customer.subscription.updated__1", suffix)
    evt["account"] = "acct_1Connected"
    return evt


async def post(
    client: httpx.AsyncClient, path: str, event: dict[str, Any], secret: str
) -> httpx.Response:
    body, headers = signed(event, secret)
    return await client.post(path, content=body, headers=headers)


async def test_an_event_at_a_named_endpoint_is_stored_with_its_name(
    named: httpx.AsyncClient, stored: Stored
) -> None:
    evt = connected_event("connect")
    response = await post(named, "/webhooks/stripe/connect", evt, CONNECT_SECRET)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    row = stored.rows()[evt["id"]]
    assert (row["endpoint"], row["account"], row["kind"]) == (
        "connect",
        "acct_1Connected",
        "snapshot",
    )
    assert await stored.wait_queued(1) == [evt["id"]]


async def test_each_endpoint_takes_only_its_own_secrets(
    named: httpx.AsyncClient, stored: Stored
) -> None:
    cases = [
        ("/webhooks/stripe/connect", SECRET),  # the default endpoint's secret
        ("/webhooks/stripe/connect", BILLING_SECRET),  # another named endpoint's
        ("/webhooks/stripe/billing", CONNECT_SECRET),
        ("/webhooks/stripe", CONNECT_SECRET),  # a named endpoint's secret at the default
    ]
    for i, (path, secret) in enumerate(cases):
        response = await post(named, path, connected_event(f"wrong{i}"), secret)
        assert response.status_code == 400, (path, secret)
        assert response.json() == {"error": "invalid_signature"}
    assert stored.rows() == {}


async def test_a_named_endpoint_takes_every_secret_of_its_rotation(
    named: httpx.AsyncClient, stored: Stored
) -> None:
    for secret in (CONNECT_SECRET, CONNECT_ROTATED):
        evt = connected_event(secret[-6:])
        assert (await post(named, "/webhooks/stripe/connect", evt, secret)).status_code == 200
    assert [r["endpoint"] for r in stored.rows().values()] == ["connect", "connect"]


async def test_the_default_endpoint_is_unchanged_and_stores_no_endpoint(
    named: httpx.AsyncClient, stored: Stored
) -> None:
    evt = connected_event("default")
    response = await deliver(named, evt)
    assert response.status_code == 200
    assert stored.rows()[evt["id"]]["endpoint"] is None


async def test_a_thin_event_at_a_named_endpoint(named: httpx.AsyncClient, stored: Stored) -> None:
    evt = thin_event(
        "v1.customer.subscription.updated",
        "subscription",
        "sub_named_1",
        "evt_thin_named",
        context="acct_1Connected",
    )
    response = await post(named, "/webhooks/stripe/connect", evt, CONNECT_SECRET)
    assert response.status_code == 200
    row = stored.rows()[evt["id"]]
    assert (row["kind"], row["endpoint"], row["account"]) == ("thin", "connect", "acct_1Connected")


async def test_an_event_stored_through_one_endpoint_is_a_duplicate_at_another(
    named: httpx.AsyncClient, stored: Stored
) -> None:
    evt = connected_event("both")
    first = await post(named, "/webhooks/stripe/connect", evt, CONNECT_SECRET)
    second = await deliver(named, evt)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert stored.rows()[evt["id"]]["endpoint"] == "connect"  # where it came in first


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/stripe/unknown",
        "/webhooks/stripe/CONNECT",  # names are lowercase
        "/webhooks/stripe/",
        "/webhooks/stripe/connect/extra",
    ],
)
async def test_an_unknown_endpoint_is_404_and_stores_nothing(
    named: httpx.AsyncClient, stored: Stored, path: str
) -> None:
    response = await post(named, path, connected_event("unknown"), CONNECT_SECRET)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "unknown_endpoint"}
    assert stored.rows() == {}


async def test_without_named_endpoints_every_name_is_unknown(
    client: httpx.AsyncClient, stored: Stored
) -> None:
    response = await post(client, "/webhooks/stripe/connect", connected_event("none"), SECRET)
    assert response.status_code == 404
    assert response.json() == {"error": "unknown_endpoint"}
    assert stored.rows() == {}


async def test_a_named_endpoint_takes_only_post(named: httpx.AsyncClient) -> None:
    assert (await named.get("/webhooks/stripe/connect")).status_code == 405


async def test_refusals_at_a_named_endpoint_are_the_default_endpoints(
    named: httpx.AsyncClient, stored: Stored
) -> None:
    body = orjson.dumps(connected_event("unsigned"))
    missing = await named.post("/webhooks/stripe/connect", content=body)
    assert (missing.status_code, missing.json()) == (400, {"error": "missing_signature"})
    malformed = await post(named, "/webhooks/stripe/connect", {"id": "evt_x"}, CONNECT_SECRET)
    assert (malformed.status_code, malformed.json()) == (400, {"error": "malformed_event"})
    assert stored.rows() == {}


async def test_the_metrics_count_unknown_endpoints(named: httpx.AsyncClient) -> None:
    await post(named, "/webhooks/stripe/nope", connected_event("metric"), CONNECT_SECRET)
    metrics = (await named.get("/metrics")).text
    assert 'stripe_webhook_requests_total{outcome="unknown_endpoint"} 1.0' in metrics
