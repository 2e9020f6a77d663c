"""Synthetic events shaped like corpus events, and the reads worker tests assert on."""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ingest.event import EventRow, event_row
from ingest.storage import insert_events_sync
from shared.db import connect
from tests.support import load_event
from tests.worker.handlers import EFFECTS_DDL
from worker.engine import Engine

BASE = load_event("stripe-ruby-mock__customer.subscription.updated__1")
T0 = 1_700_000_000


def make_event(
    event_id: str, customer: str, created: int, event_type: str, **metadata: object
) -> dict[str, Any]:
    """The corpus subscription event with our id, customer, created, type and metadata."""
    event = copy.deepcopy(BASE)
    event["id"] = event_id
    event["type"] = event_type
    event["created"] = created
    obj = event["data"]["object"]
    obj["id"] = f"sub_{event_id}"
    obj["customer"] = customer
    obj["metadata"] = {k: str(v) for k, v in metadata.items()}
    return event


def rows(events: Iterable[dict[str, Any]]) -> list[EventRow]:
    return [event_row(e, json.dumps(e)) for e in events]


def store(database_url: str, events: Sequence[dict[str, Any]], *, one_by_one: bool = True) -> None:
    """Insert through the receiver's storage function (one statement per event: distinct
    received_at values, as separate deliveries would have)."""
    with connect(database_url) as conn:
        if one_by_one:
            for row in rows(events):
                insert_events_sync(conn, [row])
        else:
            insert_events_sync(conn, rows(events))


def backlog(
    n_customers: int, per_customer: int, event_type: str, seed: int = 7, **metadata: object
) -> list[dict[str, Any]]:
    """Events for several customers, several per `created` second, shuffled."""
    rng = random.Random(seed)
    events = []
    for c in range(n_customers):
        created = T0
        for i in range(per_customer):
            created += rng.choice((0, 0, 1, 2))
            event_id = f"evt_c{c:02d}_{i:03d}"
            events.append(make_event(event_id, f"cus_{c:02d}", created, event_type, **metadata))
    rng.shuffle(events)
    return events


def create_effects_table(database_url: str) -> None:
    with connect(database_url, autocommit=True) as conn:
        conn.execute(EFFECTS_DDL)


def query(database_url: str, statement: str, params: Any = None) -> list[dict[str, Any]]:
    with connect(database_url, autocommit=True) as conn:
        return list(conn.execute(statement, params).fetchall())


def one(database_url: str, statement: str, params: Any = None) -> dict[str, Any]:
    found = query(database_url, statement, params)
    assert len(found) == 1, found
    return found[0]


def statuses(database_url: str) -> dict[str, int]:
    return {
        r["status"]: r["n"]
        for r in query(database_url, "SELECT status, count(*) AS n FROM stripe_events GROUP BY 1")
    }


def assert_creation_order(database_url: str) -> None:
    """Per key, process_seq order equals creation order (created, received_at, id)."""
    found = query(
        database_url,
        "SELECT ordering_key, id, process_seq FROM stripe_events ORDER BY ordering_key,"
        " created, received_at, id",
    )
    by_key: dict[str, list[int]] = {}
    for r in found:
        assert r["process_seq"] is not None, r
        by_key.setdefault(r["ordering_key"], []).append(r["process_seq"])
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), (key, seqs)


def effects(database_url: str) -> dict[str, int]:
    """Effect rows per event id."""
    return {
        r["event_id"]: r["n"]
        for r in query(
            database_url, "SELECT event_id, count(*) AS n FROM worker_test_effects GROUP BY 1"
        )
    }


class Messages:
    """Stands in for the broker: the messages the processor sends, delivered when due."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, int | None]] = []
        self._lock = threading.Lock()

    def enqueue(self, event_id: str, delay_ms: int | None) -> None:
        with self._lock:
            self.sent.append((time.monotonic() + (delay_ms or 0) / 1000, event_id, delay_ms))

    def deliver_all(self, processor: Engine, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.sent:
            assert time.monotonic() < deadline, "messages kept coming"
            self.sent.sort()
            due, event_id, _ = self.sent.pop(0)
            time.sleep(max(0.0, due - time.monotonic()))
            processor.handle(event_id)
