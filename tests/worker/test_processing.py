"""The processing function in-process, against real PostgreSQL: ordering, retries, dead letters.

Messages are kept in a list here instead of Redis (the real broker and processes are exercised in
test_processes.py); the Engine is the same code the actor calls.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

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


def test_backlog_is_drained_per_key_in_creation_order(effects_db: str, processor: Engine) -> None:
    events = backlog(n_customers=4, per_customer=12, event_type=h.RECORD)
    store(effects_db, events)
    # Messages arrive in the shuffled order of storage; each drains what is runnable of its key.
    for event in events:
        processor.handle(event["id"])
    assert statuses(effects_db) == {"processed": 48}
    assert_creation_order(effects_db)
    assert set(effects(effects_db).values()) == {1}
    assert len(effects(effects_db)) == 48


def test_concurrent_duplicate_messages_give_one_effect_each(
    effects_db: str, processor: Engine
) -> None:
    events = backlog(n_customers=5, per_customer=8, event_type=h.RECORD, seed=3)
    store(effects_db, events)
    ids = [e["id"] for e in events] * 3
    with ThreadPoolExecutor(max_workers=8) as executor:
        list(executor.map(processor.handle, ids))
    assert statuses(effects_db) == {"processed": 40}
    assert set(effects(effects_db).values()) == {1}
    assert_creation_order(effects_db)
    attempts = query(effects_db, "SELECT DISTINCT attempts FROM stripe_events")
    assert attempts == [{"attempts": 1}]


def test_finished_event_message_is_a_no_op(effects_db: str, processor: Engine) -> None:
    store(effects_db, [make_event("evt_done", "cus_a", T0, h.RECORD)])
    assert [o.status for o in processor.handle("evt_done")] == ["processed"]
    before = one(effects_db, "SELECT process_seq, processed_at FROM stripe_events")
    assert processor.handle("evt_done") == []
    assert processor.handle("evt_unknown") == []
    assert one(effects_db, "SELECT process_seq, processed_at FROM stripe_events") == before
    assert effects(effects_db) == {"evt_done": 1}


def test_type_without_handler_is_ignored(effects_db: str, processor: Engine) -> None:
    store(effects_db, [make_event("evt_x", "cus_a", T0, "test.worker.nobody_handles_this")])
    processor.handle("evt_x")
    row = one(effects_db, "SELECT status, attempts, process_seq, processed_at FROM stripe_events")
    assert row["status"] == "ignored"
    assert row["attempts"] == 1
    assert row["process_seq"] is not None and row["processed_at"] is not None
    log = one(effects_db, "SELECT attempt, outcome, error FROM event_attempts")
    assert log == {"attempt": 1, "outcome": "ignored", "error": None}


def test_failing_twice_then_succeeding_is_processed_with_three_attempts(
    effects_db: str, processor: Engine, messages: Messages, settings: Settings
) -> None:
    store(effects_db, [make_event("evt_flaky", "cus_a", T0, h.FLAKY, fail_times=2)])
    first = processor.handle("evt_flaky")
    assert [o.status for o in first] == ["retry"]
    row = one(effects_db, "SELECT status, attempts, last_error, next_attempt_at FROM stripe_events")
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_error"] == "RuntimeError: flaky failure on attempt 1"
    assert row["next_attempt_at"] is not None
    # A delayed message was sent for the retry, within the configured backoff bounds.
    assert len(messages.sent) == 1
    delay = messages.sent[0][2]
    assert delay is not None
    assert settings.worker_min_backoff_ms <= delay <= settings.worker_max_backoff_ms

    messages.deliver_all(processor)
    row = one(effects_db, "SELECT status, attempts, process_seq FROM stripe_events")
    assert row["status"] == "processed" and row["attempts"] == 3
    log = query(
        effects_db, "SELECT attempt, outcome, error FROM event_attempts ORDER BY started_at, id"
    )
    assert [(r["attempt"], r["outcome"]) for r in log] == [
        (1, "failed"),
        (2, "failed"),
        (3, "processed"),
    ]
    assert log[1]["error"] == "RuntimeError: flaky failure on attempt 2"
    # The failed attempts' writes were rolled back: one effect.
    assert effects(effects_db) == {"evt_flaky": 1}


def test_poison_event_goes_dead_and_its_key_moves_on_while_other_keys_never_wait(
    effects_db: str, processor: Engine, messages: Messages, settings: Settings
) -> None:
    events = [
        make_event("evt_p1", "cus_p", T0, h.POISON),
        make_event("evt_p2", "cus_p", T0, h.RECORD),
        make_event("evt_p3", "cus_p", T0 + 1, h.RECORD),
        make_event("evt_o1", "cus_o", T0, h.RECORD),
        make_event("evt_o2", "cus_o", T0 + 1, h.RECORD),
    ]
    store(effects_db, events)
    for event in events:
        messages.enqueue(event["id"], None)
    messages.deliver_all(processor)

    dead = one(
        effects_db, "SELECT status, attempts, last_error FROM stripe_events WHERE id = 'evt_p1'"
    )
    assert dead == {
        "status": "dead",
        "attempts": settings.worker_max_retries,
        "last_error": "ValueError: this event can never be processed",
    }
    letter = one(effects_db, "SELECT event_id, attempts, error, traceback FROM dead_letters")
    assert letter["event_id"] == "evt_p1"
    assert letter["attempts"] == settings.worker_max_retries
    assert letter["error"] == "ValueError: this event can never be processed"
    assert "in poison" in letter["traceback"] and "ValueError" in letter["traceback"]
    outcomes = query(
        effects_db,
        "SELECT outcome FROM event_attempts WHERE event_id = 'evt_p1' ORDER BY started_at, id",
    )
    assert [r["outcome"] for r in outcomes] == ["failed", "failed", "dead"]
    # The later events of the key went on after it died, in order.
    assert statuses(effects_db) == {"dead": 1, "processed": 4}
    assert_creation_order(effects_db)
    assert set(effects(effects_db)) == {"evt_p2", "evt_p3", "evt_o1", "evt_o2"}
    # The other customer's events did not wait for the poison event's retries.
    times = {
        r["id"]: r["t"]
        for r in query(
            effects_db,
            "SELECT id, COALESCE(processed_at, dead_at) AS t FROM stripe_events"
            " LEFT JOIN dead_letters ON event_id = id",
        )
    }
    assert times["evt_o2"] < times["evt_p1"]
    assert times["evt_p2"] > times["evt_p1"]


def test_busy_key_returns_at_once_without_consuming_retries(
    effects_db: str, processor: Engine
) -> None:
    store(effects_db, [make_event("evt_b", "cus_busy", T0, h.RECORD)])
    with psycopg.connect(effects_db) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", (key_lock_id("cus_busy"),))
        started = time.monotonic()
        assert processor.handle("evt_b") == []
        assert time.monotonic() - started < 1.0
        row = one(effects_db, "SELECT status, attempts FROM stripe_events")
        assert row == {"status": "pending", "attempts": 0}
    assert [o.status for o in processor.handle("evt_b")] == ["processed"]


def test_replayed_events_are_processed_again_with_a_new_process_seq(
    effects_db: str, processor: Engine, messages: Messages, settings: Settings
) -> None:
    store(
        effects_db,
        [
            make_event("evt_i", "cus_r", T0, "test.worker.nobody_handles_this"),
            make_event("evt_d", "cus_s", T0, h.POISON),
        ],
    )
    messages.enqueue("evt_i", None)
    messages.enqueue("evt_d", None)
    messages.deliver_all(processor)
    first = one(effects_db, "SELECT process_seq FROM stripe_events WHERE id = 'evt_i'")
    # What `stripe-ingest replay` does: back to pending, counts reset, dead letter removed.
    with psycopg.connect(effects_db) as conn:
        conn.execute(
            "UPDATE stripe_events SET status = 'pending', attempts = 0, next_attempt_at = NULL"
            " WHERE id IN ('evt_i', 'evt_d')"
        )
        conn.execute("DELETE FROM dead_letters")
    messages.enqueue("evt_i", None)
    messages.enqueue("evt_d", None)
    messages.deliver_all(processor)
    again = one(
        effects_db, "SELECT status, attempts, process_seq FROM stripe_events WHERE id = 'evt_i'"
    )
    assert again["status"] == "ignored" and again["attempts"] == 1
    assert again["process_seq"] > first["process_seq"]
    dead = one(effects_db, "SELECT status, attempts FROM stripe_events WHERE id = 'evt_d'")
    assert dead == {"status": "dead", "attempts": settings.worker_max_retries}
    assert one(effects_db, "SELECT attempts FROM dead_letters")["attempts"] == 3
    count = one(effects_db, "SELECT count(*) AS n FROM event_attempts WHERE event_id = 'evt_d'")
    assert count["n"] == 2 * settings.worker_max_retries


def test_after_commit_callbacks_run_after_the_commit_and_never_after_a_rollback(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, messages: Messages
) -> None:
    registry = Registry()
    seen: list[tuple[str, str]] = []

    def status_of(event_id: str) -> str:
        return str(
            one(effects_db, "SELECT status FROM stripe_events WHERE id = %s", (event_id,))["status"]
        )

    @registry.handles("test.after.ok", "test.after.fail")
    def handler(tx: Tx, event: Event) -> None:
        tx.after_commit.append(lambda: seen.append((event.id, status_of(event.id))))
        tx.after_commit.append(lambda: 1 / 0)  # logged, never undoes the commit
        if event.type == "test.after.fail":
            raise RuntimeError("boom")

    processor = Engine(pool=pool, settings=settings, enqueue=messages.enqueue, registry=registry)
    store(
        effects_db,
        [
            make_event("evt_ok", "cus_1", T0, "test.after.ok"),
            make_event("evt_f", "cus_2", T0, "test.after.fail"),
        ],
    )
    processor.handle("evt_ok")
    processor.handle("evt_f")
    assert seen == [("evt_ok", "processed")]
    assert status_of("evt_f") == "pending"


def test_a_message_with_its_ordering_key_is_processed_and_a_finished_one_is_a_no_op(
    effects_db: str, processor: Engine
) -> None:
    store(
        effects_db,
        [
            make_event("evt_k2", "cus_k", T0 + 1, h.RECORD),
            make_event("evt_k1", "cus_k", T0, h.RECORD),
        ],
    )
    # The key's events in creation order, whichever event the message names.
    assert [o.event_id for o in processor.handle("evt_k2", "cus_k")] == ["evt_k1", "evt_k2"]
    assert processor.handle("evt_k1", "cus_k") == []
    assert effects(effects_db) == {"evt_k1": 1, "evt_k2": 1}
    assert_creation_order(effects_db)
