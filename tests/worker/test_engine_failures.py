"""Failures wherever they happen count against their event, and never hold up other keys.

A handler, a trigger at the finishing UPDATE and a deferred constraint at COMMIT each fail one
event of a message that names several keys: that event is retried and then dead-lettered; the
other keys of the message finish in the same call. A lost connection counts against nobody.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.errors import DatabaseUnavailable
from shared.settings import Settings
from tests.worker import handlers as h
from tests.worker.support import T0, Messages, effects, make_event, one, query, store
from worker.engine import Engine
from worker.registry import Event, Registry, Tx

# Fails the finishing UPDATE of one event (status pending -> processed), not its retry or death.
FAIL_AT_UPDATE = """
CREATE FUNCTION fail_at_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 'evt_bad' AND NEW.status IN ('processed', 'ignored') THEN
        RAISE EXCEPTION 'refused by a trigger' USING DETAIL = 'card 4242 jane@example.com';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_at_update BEFORE UPDATE ON stripe_events
    FOR EACH ROW EXECUTE FUNCTION fail_at_update();
"""

# The same, but only when the transaction commits (a deferred constraint trigger).
FAIL_AT_COMMIT = """
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 'evt_bad' AND NEW.status IN ('processed', 'ignored') THEN
        RAISE EXCEPTION 'refused at commit';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER UPDATE ON stripe_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();
"""


def _events() -> list[dict[str, object]]:
    """Three keys; the bad event is first of its key, with a later event behind it."""
    return [
        make_event("evt_a1", "cus_a", T0, h.RECORD),
        make_event("evt_bad", "cus_b", T0, h.RECORD),
        make_event("evt_b2", "cus_b", T0 + 1, h.RECORD),
        make_event("evt_c1", "cus_c", T0, h.RECORD),
    ]


def _pairs() -> list[tuple[str, str]]:
    return [("evt_a1", "cus_a"), ("evt_bad", "cus_b"), ("evt_c1", "cus_c")]


def _install(database_url: str, ddl: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(ddl)  # type: ignore[arg-type]


def _run_until_settled(processor: Engine, messages: Messages) -> None:
    processor.handle_many(_pairs())
    messages.deliver_all(processor)


@pytest.mark.parametrize("ddl", [FAIL_AT_UPDATE, FAIL_AT_COMMIT], ids=["update", "commit"])
def test_a_failure_outside_the_handler_is_counted_and_dead_lettered(
    effects_db: str, processor: Engine, messages: Messages, settings: Settings, ddl: str
) -> None:
    _install(effects_db, ddl)
    store(effects_db, _events())
    first = processor.handle_many(_pairs())
    # The other keys finished in this very call, not after a sweeper lease.
    assert {o.event_id for o in first if o.status == "processed"} == {"evt_a1", "evt_c1"}
    assert [o.status for o in first if o.event_id == "evt_bad"] == ["retry"]
    messages.deliver_all(processor)
    bad = one(
        effects_db, "SELECT status, attempts, last_error FROM stripe_events WHERE id = 'evt_bad'"
    )
    assert bad["status"] == "dead"
    assert bad["attempts"] == settings.worker_max_retries
    assert "refused" in bad["last_error"]
    letter = one(effects_db, "SELECT attempts, error, traceback FROM dead_letters")
    assert letter["attempts"] == settings.worker_max_retries
    # PostgreSQL's DETAIL (row values) never reaches the stored error.
    assert "4242" not in letter["error"] and "example.com" not in letter["error"]
    # Its key goes on after it; nothing ran twice.
    later = one(effects_db, "SELECT status FROM stripe_events WHERE id = 'evt_b2'")
    assert later["status"] == "processed"
    assert effects(effects_db) == {"evt_a1": 1, "evt_b2": 1, "evt_c1": 1}
    attempts = query(
        effects_db,
        "SELECT outcome FROM event_attempts WHERE event_id = 'evt_bad' ORDER BY attempt",
    )
    assert [a["outcome"] for a in attempts] == ["failed"] * (settings.worker_max_retries - 1) + [
        "dead"
    ]


def test_a_failing_handler_does_not_delay_the_other_keys_of_its_message(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, messages: Messages
) -> None:
    registry = Registry()

    @registry.handles(h.RECORD)
    def record_or_fail(tx: Tx, event: Event) -> None:
        if event.id == "evt_bad":
            raise ValueError("cannot apply")
        h.record(tx, event)

    processor = Engine(pool=pool, settings=settings, enqueue=messages.enqueue, registry=registry)
    store(effects_db, _events())
    first = processor.handle_many(_pairs())
    assert {o.event_id: o.status for o in first} == {
        "evt_a1": "processed",
        "evt_bad": "retry",
        "evt_c1": "processed",
    }
    messages.deliver_all(processor)
    statuses = {
        r["id"]: r["status"] for r in query(effects_db, "SELECT id, status FROM stripe_events")
    }
    assert statuses == {
        "evt_a1": "processed",
        "evt_bad": "dead",
        "evt_b2": "processed",
        "evt_c1": "processed",
    }


def test_a_lost_connection_is_an_outage_and_counts_against_nobody(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, messages: Messages
) -> None:
    registry = Registry()

    @registry.handles(h.RECORD)
    def lose_the_connection(tx: Tx, event: Event) -> None:
        with psycopg.connect(effects_db, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (tx.conn.info.backend_pid,))
        tx.execute("SELECT 1")

    processor = Engine(pool=pool, settings=settings, enqueue=messages.enqueue, registry=registry)
    store(effects_db, [make_event("evt_x", "cus_x", T0, h.RECORD)])
    with pytest.raises(DatabaseUnavailable):
        processor.handle("evt_x")
    row = one(effects_db, "SELECT status, attempts FROM stripe_events")
    assert row == {"status": "pending", "attempts": 0}
    assert query(effects_db, "SELECT * FROM event_attempts") == []
    assert messages.sent == []


def test_a_deadlock_between_two_rounds_is_run_again_and_counts_against_nobody(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, messages: Messages
) -> None:
    registry = Registry()
    both_hold_their_first = threading.Barrier(2, timeout=10)
    collided: set[str] = set()

    @registry.handles(h.RECORD)
    def lock_two_rows_in_opposite_orders(tx: Tx, event: Event) -> None:
        first, second = (1, 2) if event.id == "evt_ab" else (2, 1)
        tx.execute("SELECT pg_advisory_xact_lock(424200 + %s)", (first,))
        if event.id not in collided:
            collided.add(event.id)
            both_hold_their_first.wait()  # the first time only: a deadlock, for sure
        tx.execute("SELECT pg_advisory_xact_lock(424200 + %s)", (second,))
        h.record(tx, event)

    processor = Engine(pool=pool, settings=settings, enqueue=messages.enqueue, registry=registry)
    store(
        effects_db,
        [
            make_event("evt_ab", "cus_ab", T0, h.RECORD),
            make_event("evt_ba", "cus_ba", T0, h.RECORD),
        ],
    )
    with ThreadPoolExecutor(max_workers=2) as executor:
        outcomes = list(executor.map(processor.handle, ["evt_ab", "evt_ba"]))
    assert [[o.status for o in found] for found in outcomes] == [["processed"], ["processed"]]
    assert query(effects_db, "SELECT DISTINCT attempts FROM stripe_events") == [{"attempts": 1}]
    assert effects(effects_db) == {"evt_ab": 1, "evt_ba": 1}
    assert messages.sent == []


# Refuses the finish of every `evt_bad*` event.
FAIL_MANY_AT_UPDATE = FAIL_AT_UPDATE.replace("NEW.id = 'evt_bad'", "NEW.id LIKE 'evt_bad%'")


def test_keys_behind_several_refused_ones_finish_in_the_same_call(
    effects_db: str, processor: Engine, messages: Messages
) -> None:
    # Refused rounds run the message's keys one per round; rounds that finish nothing for the
    # refused keys must not make the message give up on the keys it has not tried yet.
    _install(effects_db, FAIL_MANY_AT_UPDATE)
    pairs = [(f"evt_bad{i}", f"cus_bad{i}") for i in range(4)]
    pairs += [(f"evt_good{i}", f"cus_good{i}") for i in range(3)]
    store(effects_db, [make_event(event_id, key, T0, h.RECORD) for event_id, key in pairs])
    first = processor.handle_many(pairs)
    assert {o.event_id for o in first if o.status == "processed"} == {
        "evt_good0",
        "evt_good1",
        "evt_good2",
    }
    assert sorted(o.event_id for o in first if o.status == "retry") == [
        f"evt_bad{i}" for i in range(4)
    ]
