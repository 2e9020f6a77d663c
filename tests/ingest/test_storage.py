"""Batches that hold the same event ids, in any order, never deadlock each other."""

from __future__ import annotations

import json
import threading
import time

import psycopg

from ingest.event import event_row
from ingest.storage import insert_events_sync
from shared.db import connect
from tests.support import unique_event

SUBSCRIPTION = "stripe-ruby-mock__customer.subscription.updated__1"


def _waiting_on_a_lock(conn: psycopg.Connection[dict[str, object]], pid: int) -> bool:
    row = conn.execute(
        "SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = %s",
        (pid,),
    ).fetchone()
    return bool(row and row["waiting"])


def test_a_batch_in_reverse_order_waits_for_a_concurrent_one_instead_of_deadlocking(
    database_url: str,
) -> None:
    a, b = unique_event(SUBSCRIPTION, "a"), unique_event(SUBSCRIPTION, "b")
    first, second = sorted([a, b], key=lambda e: str(e["id"]))
    rows = [event_row(e, json.dumps(e)) for e in (second, first)]  # arrival: the later id first

    with (
        psycopg.connect(database_url) as other,
        connect(database_url) as batch_conn,
        connect(database_url, autocommit=True) as observer,
    ):
        # Another receiver's batch has inserted `first` and not yet committed.
        other.execute(
            "INSERT INTO stripe_events (id, type, created, livemode, ordering_key, payload,"
            " enqueued_at) VALUES (%s, %s, now(), false, 'cus_x', '{}', now())",
            (first["id"], first["type"]),
        )
        pid = batch_conn.info.backend_pid
        result: list[set[str] | BaseException] = []

        def insert() -> None:
            try:
                result.append(insert_events_sync(batch_conn, rows))
            except BaseException as e:
                result.append(e)

        thread = threading.Thread(target=insert)
        thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(observer, pid):
            assert time.monotonic() < deadline, "the batch never waited for the other"
            thread.join(timeout=0.01)
        # The other batch goes on to `second`: had ours taken `second` first, this would be a
        # cycle and PostgreSQL would abort one of the two.
        other.execute(
            "INSERT INTO stripe_events (id, type, created, livemode, ordering_key, payload,"
            " enqueued_at) VALUES (%s, %s, now(), false, 'cus_x', '{}', now())",
            (second["id"], second["type"]),
        )
        other.commit()
        thread.join(timeout=10)

    assert result == [set()]  # both already stored by the other batch: duplicates, no error
