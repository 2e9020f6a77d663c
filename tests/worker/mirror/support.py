"""Helpers for the billing mirror's tests: store events as the receiver does and run the
registered handlers in one transaction per event, in creation order, the way the worker does."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

import worker.mirror  # noqa: F401  (registers the mirror's handlers)
from ingest.event import event_row
from ingest.storage import insert_events_sync
from shared.db import connect
from shared.settings import Settings
from worker.registry import REGISTRY, Event, Tx

PENDING = """
SELECT id, type, created, livemode, api_version, account, ordering_key, payload, attempts
FROM stripe_events WHERE status = 'pending'
ORDER BY created, received_at, id
"""


def store(settings: Settings, events: Iterable[Mapping[str, Any]]) -> set[str]:
    """Insert events through the intake's storage function; returns the new ids."""
    rows = [event_row(dict(e), json.dumps(e)) for e in events]
    with connect(settings.database_url) as conn:
        return insert_events_sync(conn, rows)


def process_pending(settings: Settings, *, run_after_commit: bool = False) -> list[str]:
    """Process every pending event in creation order: handlers, status and attempts in one
    transaction per event, as the worker does. Returns the ids processed."""
    done = []
    with connect(settings.database_url) as conn:
        rows = conn.execute(PENDING).fetchall()
        conn.commit()
        for row in rows:
            event = Event(
                id=row["id"],
                type=row["type"],
                created=row["created"],
                livemode=row["livemode"],
                api_version=row["api_version"],
                account=row["account"],
                ordering_key=row["ordering_key"],
                payload=row["payload"],
                attempt=row["attempts"] + 1,
            )
            handlers = REGISTRY.handlers_for(event.type)
            tx = Tx(conn=conn, settings=settings)
            with conn.transaction():
                for handler in handlers:
                    handler(tx, event)
                conn.execute(
                    "UPDATE stripe_events SET status = %s, attempts = attempts + 1, "
                    "processed_at = now(), process_seq = nextval('process_seq') WHERE id = %s",
                    ("processed" if handlers else "ignored", event.id),
                )
            if run_after_commit:
                for callback in tx.after_commit:
                    callback()
            done.append(event.id)
    return done


def apply(settings: Settings, *events: Mapping[str, Any], after_commit: bool = False) -> None:
    store(settings, events)
    process_pending(settings, run_after_commit=after_commit)


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
