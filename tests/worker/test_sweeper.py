"""The sweeper in-process against real PostgreSQL and Redis: what it claims, what it sends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import psycopg
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from shared.broker import QUEUE_NAME, make_broker
from shared.settings import Settings
from tests.worker import handlers as h
from tests.worker.support import T0, make_event, one, query, store
from worker.metrics import SweeperMetrics
from worker.registry import Registry
from worker.sweeper import Sweeper


@pytest.fixture
def broker(settings: Settings) -> Iterator[RedisBroker]:
    broker = make_broker(settings)
    yield broker
    broker.close()


def queued_ids(redis_url: str, namespace: str) -> list[str]:
    """The event ids of the messages waiting in our queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hvals(f"{namespace}:{QUEUE_NAME}.msgs")
    finally:
        client.close()
    return sorted(json.loads(m)["args"][0] for m in raw)


def age(database_url: str, seconds: float, where: str = "true") -> None:
    """Pretend the events were handed to the broker `seconds` ago."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE stripe_events SET enqueued_at = clock_timestamp()"
            " - make_interval(secs => %s) WHERE " + where,
            (seconds,),
        )


def test_claims_only_stranded_due_events_and_sends_one_message_per_key(
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
        assert sweeper.sweep_once() == 3
        # A second pass right after finds nothing: the claim restarted their lease.
        assert sweeper.sweep_once() == 0
    finally:
        sweeper.close()
    assert queued_ids(redis_url, redis_namespace) == ["evt_a1", "evt_b1"]
    assert metrics.registry.get_sample_value("stripe_sweeper_requeued_total") == 3
    bumped = query(
        effects_db,
        "SELECT id FROM stripe_events WHERE enqueued_at > now() - interval '5 s' ORDER BY id",
    )
    assert [r["id"] for r in bumped] == ["evt_a1", "evt_a2", "evt_b1", "evt_fresh"]


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
