"""Redis or PostgreSQL not answering: what the receiver answers, stores and reports."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.ingest.helpers import Stored, deliver, serve
from tests.procs import free_port
from tests.support import unique_event

pytestmark = pytest.mark.anyio


async def metric(client: httpx.AsyncClient, line_start: str) -> float | None:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return None


async def eventually(client: httpx.AsyncClient, line_start: str, value: float) -> float | None:
    deadline = time.monotonic() + 10
    while (found := await metric(client, line_start)) != value and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return found


async def test_redis_down_still_answers_200_stores_the_row_and_counts_the_failure(
    settings: Settings, stored: Stored
) -> None:
    no_redis = settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    evt = unique_event("stripe-ruby-mock__invoice.payment_failed__1", "redis-down")
    async with serve(create_app(no_redis)) as client:
        response = await deliver(client, evt)
        failures = await eventually(client, "stripe_webhook_enqueue_failures_total", 1.0)
        enqueued = await metric(client, "stripe_webhook_enqueued_total")
        ready = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    row = stored.rows()[evt["id"]]
    # Stored, pending, with the time the sweeper's lease counts from.
    assert row["status"] == "pending"
    assert row["enqueued_at"] is not None
    assert failures == 1.0
    assert enqueued == 0.0
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "down": ["redis"]}
    assert stored.queued() == []


async def test_postgresql_unreachable_answers_503_and_readyz_names_it(
    settings: Settings, stored: Stored
) -> None:
    no_db = settings.with_overrides(database_url=f"postgresql://127.0.0.1:{free_port()}/nowhere")
    evt = unique_event("stripe-ruby-mock__invoice.payment_failed__1", "db-down")
    async with serve(create_app(no_db)) as client:
        ready = await client.get("/readyz")
        response = await deliver(client, evt)
        unavailable = await metric(client, 'stripe_webhook_requests_total{outcome="unavailable"}')
        health = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"error": "unavailable"}
    assert unavailable == 1.0
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "down": ["postgresql"]}
    assert health.status_code == 200
    assert stored.rows() == {}
    assert stored.queued() == []


async def test_readyz_is_200_when_both_answer_and_names_both_when_both_are_down(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "down": []}

    neither = settings.with_overrides(
        database_url=f"postgresql://127.0.0.1:{free_port()}/nowhere",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    async with serve(create_app(neither)) as down_client:
        both = await down_client.get("/readyz")
    assert both.status_code == 503
    assert both.json() == {"status": "unavailable", "down": ["postgresql", "redis"]}
