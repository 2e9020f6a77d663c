"""The sweeper in-process against real PostgreSQL and Redis: what it claims, what it sends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import psycopg
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from shared.broker import (
    EVENTS_PER_MESSAGE,
    PROCESS_ACTOR,
    PROCESS_MANY_ACTOR,
    QUEUE_NAME,
    make_broker,
    message_event_ids,
)
from shared.settings import Settings
from tests.worker import handlers as h
from tests.worker.support import T0, make_event, one, query, store
from worker.metrics import SweeperMetrics
from worker.registry import Registry
from worker.sweeper import BACKLOG_KEYS, QUEUE_BUSY_MESSAGES, Sweeper


@pytest.fixture
def broker(settings: Settings) -> Iterator[RedisBroker]:
    broker = make_broker(settings)
    yield broker
    broker.close()
    broker.client.connection_pool.disconnect()  # the sweeper's threads each took a connection


def queued(redis_url: str, namespace: str) -> list[dict[str, object]]:
    """The messages waiting in our queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hvals(f"{namespace}:{QUEUE_NAME}.msgs")
    finally:
        client.close()
    return [json.loads(m) for m in raw]


def queued_ids(redis_url: str, namespace: str) -> list[str]:
    """The event ids the messages waiting in our queue name."""
    messages = queued(redis_url, namespace)
    return sorted(i for m in messages for i in message_event_ids(m["actor_name"], m["args"]))


def age(database_url: str, seconds: float, where: str = "true") -> None:
    """Pretend the events were handed to the broker `seconds` ago."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE stripe_events SET enqueued_at = clock_timestamp()"
            " - make_interval(secs => %s) WHERE " + where,
            (seconds,),
        )


def test_claims_the_head_of_each_stranded_key_and_sends_one_message_per_key(
    effects_db: str, settings: Settings, broker: RedisBroker, redis_url: str, redis_namespace: str
) -> None:
    store(
        effects_db,
        [
            make_event("evt_a2", "cus_a", T0 + 1, h.RECORD),
            make_event("evt_a1", "cus_a", T0, h.RECORD),
            make_event("evt_b1", "cus_b", T0, h.RECORD),
            make_event("evt_fresh", "cus_c", T0, h.RECORD),
            make_event("evt_backoff", "cus_d", T0, h.RECORD),
            # Behind a head that waits for its retry: it cannot run before it, nor be sent.
            make_event("evt_d2", "cus_d", T0 + 1, h.RECORD),
            make_event("evt_done", "cus_e", T0, h.RECORD),
        ],
    )
    age(effects_db, 60, "id <> 'evt_fresh'")
    with psycopg.connect(effects_db) as conn:
        conn.execute(
            "UPDATE stripe_events SET next_attempt_at = now() + interval '1 hour'"
            " WHERE id = 'evt_backoff'"
        )
        conn.execute("UPDATE stripe_events SET status = 'processed' WHERE id = 'evt_done'")
    metrics = SweeperMetrics()
    sweeper = Sweeper(settings, broker, metrics)
    try:
        # cus_a's head is evt_a1: its message drains evt_a2 too, which needs no claim.
        assert sweeper.sweep_once() == 2
        # A second pass right after finds nothing: the claim restarted their lease.
        assert sweeper.sweep_once() == 0
    finally:
        sweeper.close()
    assert queued_ids(redis_url, redis_namespace) == ["evt_a1", "evt_b1"]
    assert metrics.registry.get_sample_value("stripe_sweeper_requeued_total") == 2
    bumped = query(
        effects_db,
        "SELECT id FROM stripe_events WHERE enqueued_at > now() - interval '5 s' ORDER BY id",
    )
    assert [r["id"] for r in bumped] == ["evt_a1", "evt_b1", "evt_fresh"]


def test_a_backlog_is_resent_in_ordinary_messages_first_then_as_suspects_per_key(
    effects_db: str, settings: Settings, broker: RedisBroker, redis_url: str, redis_namespace: str
) -> None:
    # A backlog (Redis lost its messages) drains like the receiver's batches; a key stranded
    # again may hold an event that kills its worker: its attempt is counted before it runs.
    keys = BACKLOG_KEYS + 6
    events = [make_event(f"evt_k{i:03d}", f"cus_k{i}", T0, h.RECORD) for i in range(keys)]
    store(effects_db, events, one_by_one=False)
    sweeper = Sweeper(settings, broker)
    try:
        age(effects_db, 60)
        assert sweeper.sweep_once() == keys
        first = queued(redis_url, redis_namespace)
        sizes = sorted(len(m["args"][0]) for m in first)  # type: ignore[arg-type]
        assert sizes == [6] + [EVENTS_PER_MESSAGE] * (BACKLOG_KEYS // EVENTS_PER_MESSAGE)
        assert {m["actor_name"] for m in first} == {PROCESS_MANY_ACTOR}
        assert all(m["kwargs"] == {} for m in first)

        client = redis.Redis.from_url(redis_url)
        client.delete(f"{redis_namespace}:{QUEUE_NAME}.msgs", f"{redis_namespace}:{QUEUE_NAME}")
        client.close()
        age(effects_db, 60)
        assert sweeper.sweep_once() == keys
    finally:
        sweeper.close()
    again = queued(redis_url, redis_namespace)
    assert len(again) == keys
    assert {m["actor_name"] for m in again} == {PROCESS_ACTOR}
    assert all(m["kwargs"] == {"claim": True} for m in again)
    assert queued_ids(redis_url, redis_namespace) == sorted(e["id"] for e in events)


def test_a_queue_the_workers_are_behind_on_gets_no_copies_until_it_drains(
    effects_db: str, settings: Settings, broker: RedisBroker, redis_url: str, redis_namespace: str
) -> None:
    # After an outage the workers take a while to drain what Redis still holds: stranded rows
    # are not re-sent on top of it (each lease would add a copy of the backlog).
    store(effects_db, [make_event("evt_s1", "cus_s", T0, h.RECORD)])
    age(effects_db, 60)
    client = redis.Redis.from_url(redis_url)
    queue = f"{redis_namespace}:{QUEUE_NAME}"
    try:
        with client.pipeline() as pipe:
            for i in range(QUEUE_BUSY_MESSAGES):
                pipe.rpush(queue, f"waiting-{i}")
            pipe.execute()
        sweeper = Sweeper(settings, broker)
        try:
            assert sweeper.sweep_once() == 0
            assert one(effects_db, "SELECT sweeps FROM stripe_events")["sweeps"] == 0
            client.ltrim(queue, 0, QUEUE_BUSY_MESSAGES - 2)  # one taken by a worker
            assert sweeper.sweep_once() == 1
        finally:
            sweeper.close()
    finally:
        client.close()
    assert one(effects_db, "SELECT sweeps FROM stripe_events")["sweeps"] == 1


def test_two_sweepers_at_once_claim_each_event_once(
    effects_db: str, settings: Settings, broker: RedisBroker
) -> None:
    store(
        effects_db,
        [make_event(f"evt_{i:03d}", f"cus_{i:03d}", T0, h.RECORD) for i in range(300)],
        one_by_one=False,
    )
    age(effects_db, 60)
    claimed: list[int] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        sweeper = Sweeper(settings.with_overrides(), broker)
        try:
            sweeper._connection()
            barrier.wait()
            claimed.append(sweeper.sweep_once())
        finally:
            sweeper.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(claimed) == 300


def test_broker_down_claims_nothing_and_the_next_pass_sends(
    effects_db: str, settings: Settings, broker: RedisBroker, redis_url: str, redis_namespace: str
) -> None:
    store(effects_db, [make_event("evt_r", "cus_r", T0, h.RECORD)])
    age(effects_db, 60)
    down = make_broker(settings.with_overrides(redis_url="redis://127.0.0.1:1/0"))
    sweeper = Sweeper(settings, down)
    try:
        assert sweeper.run_pass() == 0  # logged, not raised
    finally:
        sweeper.close()
        down.close()
    row = one(effects_db, "SELECT enqueued_at < now() - interval '50 s' AS old FROM stripe_events")
    assert row["old"], "a failed send must not restart the lease"
    sweeper = Sweeper(settings, broker)
    try:
        assert sweeper.run_pass() == 1
    finally:
        sweeper.close()
    assert queued_ids(redis_url, redis_namespace) == ["evt_r"]


def test_database_down_is_logged_and_hooks_still_run(
    settings: Settings, broker: RedisBroker
) -> None:
    registry = Registry()
    ran: list[str] = []

    @registry.on_sweep
    def broken(_: Settings, __: object) -> None:
        raise RuntimeError("hook failure")

    @registry.on_sweep
    def fine(s: Settings, _: object) -> None:
        ran.append(s.redis_namespace)

    unreachable = settings.with_overrides(database_url="postgresql://127.0.0.1:1/nothing")
    sweeper = Sweeper(unreachable, broker, registry=registry)
    assert sweeper.run_pass() == 0
    assert ran == [settings.redis_namespace]
