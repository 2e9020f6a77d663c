"""Helpers for the billing mirror's tests: store events as the receiver does and process them
with the workers' Engine, in-process."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

import worker.mirror.handlers  # noqa: F401  (registers the mirror's handlers)
from ingest.event import event_row
from ingest.storage import insert_events_sync
from shared.broker import make_broker
from shared.db import connect, make_pool
from shared.settings import Settings
from worker.engine import Engine
from worker.inflight import Outcome
from worker.mirror.services import mirror_services

PENDING_KEYS = """
SELECT ordering_key FROM stripe_events WHERE status = 'pending'
GROUP BY ordering_key ORDER BY min(created)
"""


def store(settings: Settings, events: Iterable[Mapping[str, Any]]) -> set[str]:
    """Insert events through the intake's storage function; returns the new ids."""
    rows = [event_row(dict(e), json.dumps(e)) for e in events]
    with connect(settings.database_url) as conn:
        return insert_events_sync(conn, rows)


def process_pending(settings: Settings) -> list[Outcome]:
    """Drain every key with pending events through the workers' own Engine (what the
    `process_event` actor runs): handlers, status and attempts in one transaction per event,
    creation order per key, after-commit callbacks (notification enqueues) run. Retries are due
    later and are not waited for here."""
    pool = make_pool(settings.database_url, min_size=1, max_size=2, name="mirror-tests")
    pool.open(wait=True)
    retries: list[tuple[str, int | None]] = []
    broker = make_broker(settings)
    try:
        processor = Engine(
            pool=pool,
            settings=settings,
            enqueue=lambda i, d: retries.append((i, d)),
            services=mirror_services(settings, broker),
        )
        with pool.connection() as conn:
            keys = [r["ordering_key"] for r in conn.execute(PENDING_KEYS).fetchall()]
        outcomes: list[Outcome] = []
        for key in keys:
            outcomes.extend(processor.drain(key))
        return outcomes
    finally:
        pool.close()
        broker.close()


def apply(settings: Settings, *events: Mapping[str, Any]) -> list[Outcome]:
    store(settings, events)
    return process_pending(settings)


def replay(settings: Settings, event_id: str) -> None:
    """What an operator's replay does: back to pending with attempts 0, then processed again."""
    with connect(settings.database_url) as conn:
        conn.execute(
            "UPDATE stripe_events SET status = 'pending', attempts = 0, processed_at = NULL, "
            "process_seq = NULL WHERE id = %s",
            (event_id,),
        )
        conn.commit()
    process_pending(settings)


def row(settings: Settings, table: str, object_id: str) -> dict[str, Any] | None:
    with connect(settings.database_url) as conn:
        query = psycopg.sql.SQL("SELECT * FROM {} WHERE id = %s").format(
            psycopg.sql.Identifier(table)
        )
        return conn.execute(query, (object_id,)).fetchone()


def rows(settings: Settings, query: str, params: Any = None) -> list[dict[str, Any]]:
    with connect(settings.database_url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def wrap(
    event_type: str,
    obj: Mapping[str, Any],
    event_id: str,
    created: int,
    *,
    api_version: str | None = "2025-03-31.basil",
    previous_attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An event envelope around an object, as Stripe sends it."""
    data: dict[str, Any] = {"object": copy.deepcopy(dict(obj))}
    if previous_attributes is not None:
        data["previous_attributes"] = dict(previous_attributes)
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
