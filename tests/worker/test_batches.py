"""Messages naming many events (what the receiver sends): many keys per transaction, the same
guarantees as one event per message. In-process against real PostgreSQL; the real broker and
worker processes run them in test_processes.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.settings import Settings
from tests.worker import handlers as h
from tests.worker.support import (
    T0,
    Messages,
    assert_creation_order,
    backlog,
    effects,
    make_event,
    one,
    query,
    statuses,
    store,
)
from worker.engine import Engine
from worker.policy import key_lock_id
from worker.registry import Event, Registry, Tx


def pairs(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["id"], e["data"]["object"]["customer"]) for e in events]


def test_a_message_naming_many_keys_finishes_each_key_in_creation_order(
    effects_db: str, processor: Engine
) -> None:
    events = backlog(n_customers=6, per_customer=20, event_type=h.RECORD)
    store(effects_db, events)
    # One message naming one event per key: every key is drained, over several rounds.
    first_of_each = list({key: event_id for event_id, key in pairs(events)}.items())
    outcomes = processor.handle_many([(event_id, key) for key, event_id in first_of_each])
    assert len(outcomes) == 120
    assert {o.status for o in outcomes} == {"processed"}
    assert statuses(effects_db) == {"processed": 120}
    assert_creation_order(effects_db)
    assert set(effects(effects_db).values()) == {1} and len(effects(effects_db)) == 120
    attempts = query(effects_db, "SELECT outcome, attempt, worker FROM event_attempts")
    assert len(attempts) == 120
    assert {(a["outcome"], a["attempt"], a["worker"]) for a in attempts} == {
        ("processed", 1, "test")
    }
    # The message again, and a message naming finished events: nothing changes.
    before = query(effects_db, "SELECT id, process_seq, processed_at FROM stripe_events")
    assert processor.handle_many(pairs(events)) == []
    assert query(effects_db, "SELECT id, process_seq, processed_at FROM stripe_events") == before


def test_concurrent_overlapping_messages_give_one_effect_per_event_in_order(
    effects_db: str, processor: Engine
) -> None:
    events = backlog(n_customers=8, per_customer=10, event_type=h.RECORD, seed=5)
    store(effects_db, events)
    named = pairs(events)
    # Batches as the receiver would send them, each sent twice (a redelivery), in parallel.
    batches = [named[i : i + 7] for i in range(0, len(named), 7)] * 2
    with ThreadPoolExecutor(max_workers=8) as executor:
        list(executor.map(processor.handle_many, batches))
    assert statuses(effects_db) == {"processed": 80}
    assert set(effects(effects_db).values()) == {1}
    assert_creation_order(effects_db)
    assert query(effects_db, "SELECT DISTINCT attempts FROM stripe_events") == [{"attempts": 1}]


def test_a_failing_event_retries_alone_while_the_rest_of_the_message_is_processed(
    effects_db: str, processor: Engine, messages: Messages
) -> None:
    events = [
        make_event("evt_f1", "cus_f", T0, h.FLAKY, fail_times=1),
        make_event("evt_f2", "cus_f", T0 + 1, h.RECORD),
        make_event("evt_a1", "cus_a", T0, h.RECORD),
        make_event("evt_a2", "cus_a", T0 + 1, h.RECORD),
        make_event("evt_b1", "cus_b", T0, "test.worker.nobody_handles_this"),
    ]
    store(effects_db, events)
    outcomes = processor.handle_many(pairs(events))
    assert {(o.event_id, o.status) for o in outcomes} == {
        ("evt_f1", "retry"),
        ("evt_a1", "processed"),
        ("evt_a2", "processed"),
        ("evt_b1", "ignored"),
    }
    # The failed event's key waits for its retry: its later event is not run before it.
    assert one(effects_db, "SELECT status FROM stripe_events WHERE id = 'evt_f2'") == {
        "status": "pending"
    }
    assert [event_id for _, event_id, _ in messages.sent] == ["evt_f1"]
    messages.deliver_all(processor)
    assert statuses(effects_db) == {"processed": 4, "ignored": 1}
    assert_creation_order(effects_db)
    assert effects(effects_db) == {"evt_f1": 1, "evt_f2": 1, "evt_a1": 1, "evt_a2": 1}
    log = query(
        effects_db,
        "SELECT event_id, attempt, outcome FROM event_attempts ORDER BY event_id, attempt",
    )
    assert [(r["event_id"], r["attempt"], r["outcome"]) for r in log] == [
        ("evt_a1", 1, "processed"),
        ("evt_a2", 1, "processed"),
        ("evt_b1", 1, "ignored"),
        ("evt_f1", 1, "failed"),
        ("evt_f1", 2, "processed"),
        ("evt_f2", 1, "processed"),
    ]


def test_a_busy_key_is_left_to_its_holder_and_a_waiting_key_to_its_retry(
    effects_db: str, processor: Engine
) -> None:
    events = [
        make_event("evt_busy", "cus_busy", T0, h.RECORD),
        make_event("evt_wait", "cus_wait", T0, h.RECORD),
        make_event("evt_free", "cus_free", T0, h.RECORD),
    ]
    store(effects_db, events)
    with psycopg.connect(effects_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE stripe_events SET next_attempt_at = now() + interval '1 hour'"
            " WHERE id = 'evt_wait'"
        )
    with psycopg.connect(effects_db) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", (key_lock_id("cus_busy"),))
        assert [o.event_id for o in processor.handle_many(pairs(events))] == ["evt_free"]
    assert statuses(effects_db) == {"pending": 2, "processed": 1}
    assert one(effects_db, "SELECT attempts FROM stripe_events WHERE id = 'evt_busy'") == {
        "attempts": 0
    }
    assert [o.event_id for o in processor.handle_many(pairs(events))] == ["evt_busy"]


def test_after_commit_callbacks_of_a_round_run_after_its_commit(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, messages: Messages
) -> None:
    registry = Registry()
    seen: list[tuple[str, str]] = []

    @registry.handles("test.after.ok", "test.after.fail")
    def handler(tx: Tx, event: Event) -> None:
        def after() -> None:
            row = one(effects_db, "SELECT status FROM stripe_events WHERE id = %s", (event.id,))
            seen.append((event.id, str(row["status"])))

        tx.after_commit.append(after)
        if event.type == "test.after.fail":
            raise RuntimeError("boom")

    processor = Engine(pool=pool, settings=settings, enqueue=messages.enqueue, registry=registry)
    events = [
        make_event("evt_ok1", "cus_1", T0, "test.after.ok"),
        make_event("evt_ok2", "cus_1", T0 + 1, "test.after.ok"),
        make_event("evt_f", "cus_2", T0, "test.after.fail"),
    ]
    store(effects_db, events)
    processor.handle_many(pairs(events))
    # The rolled-back round's callbacks never ran; each committed event's ran once.
    assert sorted(seen) == [("evt_ok1", "processed"), ("evt_ok2", "processed")]
    assert one(effects_db, "SELECT status FROM stripe_events WHERE id = 'evt_f'") == {
        "status": "pending"
    }


def test_deferred_items_of_a_round_reach_their_function_once_after_the_commit(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, messages: Messages
) -> None:
    registry = Registry()
    calls: list[list[tuple[str, str]]] = []

    def send_all(items: list[str]) -> None:
        calls.append(
            [(i, one(effects_db, "SELECT status FROM stripe_events WHERE id = %s", (i,))["status"])
             for i in items]
        )  # fmt: skip

    @registry.handles("test.deferred")
    def handler(tx: Tx, event: Event) -> None:
        tx.defer(send_all, event.id)

    processor = Engine(pool=pool, settings=settings, enqueue=messages.enqueue, registry=registry)
    events = [
        make_event("evt_d1", "cus_1", T0, "test.deferred"),
        make_event("evt_d2", "cus_2", T0, "test.deferred"),
        make_event("evt_d3", "cus_1", T0 + 1, "test.deferred"),
    ]
    store(effects_db, events)
    processor.handle_many(pairs(events))
    assert len(calls) == 1
    assert sorted(calls[0]) == [
        ("evt_d1", "processed"),
        ("evt_d2", "processed"),
        ("evt_d3", "processed"),
    ]
