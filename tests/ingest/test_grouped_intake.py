"""Grouped intake keeps every contract guarantee: duplicates inside one batch, a row PostgreSQL
refuses, a database error in the middle of a batch answering 503 to exactly that batch.

Batches are made deterministic in two ways: requests handed to the batcher in the same event
loop turn form one batch; and a trigger makes inserts of `evt_hold*` ids wait on an advisory lock
the test holds, so a batch stays in flight while the next one collects and the test can kill
exactly that batch's backend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import psycopg
import pytest

from ingest.app import create_app
from ingest.batcher import Batcher
from ingest.dramatiq_compat import RedisEnqueue
from ingest.enqueuer import Enqueuer
from ingest.event import EventRow, parse_event
from ingest.metrics import IntakeMetrics
from ingest.storage import EventRejected
from shared.broker import make_broker
from shared.db import DatabaseUnavailable, make_async_pool
from shared.settings import Settings
from tests.ingest.helpers import LOCK, Stored, deliver, serve, waiting_backends
from tests.support import unique_event

pytestmark = pytest.mark.anyio


def row(event_id: str) -> EventRow:
    event = unique_event("stripe-ruby-mock__invoice.paid__1", "x")
    event["id"] = event_id
    return parse_event(orjson.dumps(event))


def bad_row(event_id: str) -> EventRow:
    """A row orjson accepts and PostgreSQL's jsonb refuses (numeric out of range)."""
    good = row(event_id)
    payload = good.payload.replace('"amount_due":', '"amount_due":1e-1000000,"was":', 1)
    assert "1e-1000000" in payload
    return parse_event(payload)


@asynccontextmanager
async def intake(
    settings: Settings, window_s: float = 0.002, max_rows: int = 256
) -> AsyncIterator[tuple[Batcher, IntakeMetrics]]:
    """The batcher and enqueuer as the app wires them (real pool, real broker)."""
    metrics = IntakeMetrics()
    broker = make_broker(settings)
    pool = make_async_pool(settings.database_url, min_size=1, max_size=2)
    await pool.open(wait=True)
    redis_enqueue = RedisEnqueue(broker, settings.redis_url)
    enqueuer = Enqueuer(redis_enqueue, metrics)
    batcher = Batcher(
        pool,
        max_rows=max_rows,
        window_s=window_s,
        max_inflight=2,
        on_new=enqueuer.submit,
        metrics=metrics,
    )
    batcher.start()
    enqueuer.start()
    try:
        yield batcher, metrics
    finally:
        await batcher.close()
        await enqueuer.close()
        await pool.close()
        await redis_enqueue.aclose()
        broker.close()


def batches(metrics: IntakeMetrics) -> tuple[float | None, float | None]:
    """(grouped INSERTs, rows in them) so far."""
    return (
        metrics.registry.get_sample_value("stripe_intake_batch_rows_count"),
        metrics.registry.get_sample_value("stripe_intake_batch_rows_sum"),
    )


async def test_duplicates_inside_one_batch_answer_new_once_and_enqueue_once(
    settings: Settings, stored: Stored
) -> None:
    async with intake(settings) as (batcher, metrics):
        first, twin = row("evt_twin_a"), row("evt_twin_b")
        results = await asyncio.gather(
            batcher.store(first), batcher.store(first), batcher.store(twin), batcher.store(first)
        )
        queued = await stored.wait_queued(2)

    assert results == [True, False, True, False]
    assert batches(metrics) == (1.0, 2.0)  # one INSERT, each id once
    assert set(stored.rows()) == {"evt_twin_a", "evt_twin_b"}
    assert queued == ["evt_twin_a", "evt_twin_b"]


async def test_a_row_postgresql_refuses_fails_alone_and_its_batch_is_stored(
    settings: Settings, stored: Stored
) -> None:
    async with intake(settings) as (batcher, metrics):
        results = await asyncio.gather(
            batcher.store(row("evt_ok_1")),
            batcher.store(bad_row("evt_bad")),
            batcher.store(row("evt_ok_2")),
            batcher.store(row("evt_ok_1")),
            return_exceptions=True,
        )
        queued = await stored.wait_queued(2)

    assert results[0] is True
    assert isinstance(results[1], EventRejected)
    assert results[2:] == [True, False]
    assert batches(metrics) == (1.0, 3.0)
    assert set(stored.rows()) == {"evt_ok_1", "evt_ok_2"}
    assert queued == ["evt_ok_1", "evt_ok_2"]


async def test_a_database_error_mid_batch_fails_exactly_that_batch(
    settings: Settings, stored: Stored, hold: psycopg.Connection[tuple[object, ...]]
) -> None:
    async with intake(settings) as (batcher, metrics):
        doomed = asyncio.gather(
            batcher.store(row("evt_hold_1")),
            batcher.store(row("evt_doomed_1")),
            batcher.store(row("evt_doomed_2")),
            return_exceptions=True,
        )
        [pid] = await waiting_backends(hold, 1)
        # Another batch, on the other connection, while the first one is in flight.
        other = await asyncio.gather(
            batcher.store(row("evt_other_1")), batcher.store(row("evt_other_2"))
        )
        hold.execute("SELECT pg_terminate_backend(%s)", (pid,))
        failed = await doomed
        after = await batcher.store(row("evt_after"))
        queued = await stored.wait_queued(3)

    assert other == [True, True]
    assert [type(r) for r in failed] == [DatabaseUnavailable] * 3
    assert after is True
    assert metrics.registry.get_sample_value("stripe_intake_database_errors_total") == 1.0
    assert set(stored.rows()) == {"evt_other_1", "evt_other_2", "evt_after"}
    assert queued == ["evt_other_1", "evt_other_2", "evt_after"]


async def test_over_http_a_killed_batch_answers_503_to_exactly_its_requests(
    settings: Settings, stored: Stored, hold: psycopg.Connection[tuple[object, ...]]
) -> None:
    # A long window: requests arriving while a flush is in flight collect into one batch.
    app = create_app(settings.with_overrides(intake_batch_window_ms=300.0))

    def evt(event_id: str) -> dict[str, object]:
        event = unique_event("stripe-ruby-mock__invoice.paid__1", "x")
        event["id"] = event_id
        return event

    async with serve(app) as client:
        first = asyncio.ensure_future(deliver(client, evt("evt_hold_first")))
        await waiting_backends(hold, 1)
        second_batch = asyncio.gather(
            deliver(client, evt("evt_hold_second")),
            deliver(client, evt("evt_x1")),
            deliver(client, evt("evt_x2")),
            deliver(client, evt("evt_hold_first")),
        )
        pids = await waiting_backends(hold, 2)
        assert len(pids) == 2
        hold.execute("SELECT pg_terminate_backend(%s)", (pids[-1],))  # the later batch
        failed: list[httpx.Response] = await second_batch
        hold.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
        stored_first = await first
        retried = await deliver(client, evt("evt_x1"))
        metrics_text = (await client.get("/metrics")).text
        queued = await stored.wait_queued(2)

    assert [r.status_code for r in failed] == [503] * 4
    assert all(r.json() == {"error": "unavailable"} for r in failed)
    assert stored_first.json() == {"received": True, "duplicate": False, "id": "evt_hold_first"}
    assert retried.json() == {"received": True, "duplicate": False, "id": "evt_x1"}
    assert 'stripe_webhook_requests_total{outcome="unavailable"} 4.0' in metrics_text
    assert set(stored.rows()) == {"evt_hold_first", "evt_x1"}
    assert queued == ["evt_hold_first", "evt_x1"]


async def test_over_http_duplicates_grouped_in_one_batch(
    settings: Settings, stored: Stored, hold: psycopg.Connection[tuple[object, ...]]
) -> None:
    app = create_app(settings.with_overrides(intake_batch_window_ms=300.0))
    a = unique_event("stripe-ruby-mock__invoice.paid__1", "dup_a")
    b = unique_event("stripe-ruby-mock__invoice.paid__1", "dup_b")
    blocker = unique_event("stripe-ruby-mock__invoice.paid__1", "x")
    blocker["id"] = "evt_hold_blocker"

    async with serve(app) as client:
        held = asyncio.ensure_future(deliver(client, blocker))
        await waiting_backends(hold, 1)
        grouped = await asyncio.gather(*(deliver(client, e) for e in (a, a, b, a, b)))
        hold.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
        await held
        metrics_text = (await client.get("/metrics")).text
        queued = await stored.wait_queued(3)

    answers = [r.json() for r in grouped]
    assert [x["id"] for x in answers] == [a["id"], a["id"], b["id"], a["id"], b["id"]]
    assert [x["duplicate"] for x in answers] == [False, True, False, True, True]
    # The blocker alone, then one INSERT of the two distinct ids.
    assert "stripe_intake_batch_rows_count 2.0" in metrics_text
    assert "stripe_intake_batch_rows_sum 3.0" in metrics_text
    assert set(stored.rows()) == {a["id"], b["id"], "evt_hold_blocker"}
    assert sorted(queued) == sorted([a["id"], b["id"], "evt_hold_blocker"])


async def test_an_idle_receiver_flushes_at_once_whatever_the_window(
    settings: Settings, stored: Stored
) -> None:
    async with intake(settings, window_s=30.0) as (batcher, _metrics):
        started = time.monotonic()
        first = await batcher.store(row("evt_idle_1"))
        second = await batcher.store(row("evt_idle_2"))
        elapsed = time.monotonic() - started

    assert (first, second) == (True, True)
    assert elapsed < 5.0  # not the 30 s window: nothing else was in flight
    assert set(stored.rows()) == {"evt_idle_1", "evt_idle_2"}


async def test_batches_are_capped_at_max_rows(settings: Settings, stored: Stored) -> None:
    ids = [f"evt_capped_{i}" for i in range(7)]
    async with intake(settings, window_s=30.0, max_rows=3) as (batcher, metrics):
        results = await asyncio.gather(*(batcher.store(row(i)) for i in ids))
        queued = await stored.wait_queued(7)

    assert results == [True] * 7
    # 3 at once (idle), 3 more at once (a full batch does not wait for the window), then 1.
    assert batches(metrics) == (3.0, 7.0)
    assert set(stored.rows()) == set(ids)
    assert queued == ids


async def test_shutdown_drains_waiting_rows_and_their_enqueues(
    settings: Settings, stored: Stored
) -> None:
    app = create_app(settings.with_overrides(intake_batch_window_ms=30_000.0))
    events = [unique_event("stripe-ruby-mock__invoice.paid__1", f"drain{i}") for i in range(20)]
    async with serve(app) as client:
        pending = asyncio.gather(*(deliver(client, e) for e in events))
        await asyncio.sleep(0)  # the requests are in; the lifespan now ends under them
    responses = await pending

    assert [r.status_code for r in responses] == [200] * 20
    assert set(stored.rows()) == {e["id"] for e in events}
    assert sorted(stored.queued()) == sorted(e["id"] for e in events)
