"""Real `python -m worker` processes (Dramatiq on Redis) and the sweeper, against PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from shared.broker import enqueue_events, events_message, make_broker
from shared.settings import Settings
from tests.procs import free_port, run_sweeper, run_worker, wait_until
from tests.reliability.servers import private_redis
from tests.worker import handlers as h
from tests.worker.support import (
    T0,
    assert_creation_order,
    backlog,
    effects,
    make_event,
    one,
    query,
    statuses,
    store,
)

HANDLERS = "tests.worker.handlers"
# Dramatiq's Redis broker re-delivers a dead worker's messages only after this (ms) and a
# maintenance pass: recovery that beats it comes from the sweeper.
DRAMATIQ_HEARTBEAT_TIMEOUT_S = 60


def finished(database_url: str, total: int) -> bool:
    counts = statuses(database_url)
    return sum(n for s, n in counts.items() if s != "pending") >= total


def send(settings: Settings, ids: list[str], *, events: list[dict[str, Any]] | None = None) -> None:
    """One `process_event` message per id; with `events`, `process_events` messages naming the
    ids with their ordering keys, 10 per message (what the receiver sends for a flush under
    moderate load; it puts up to 64 in one)."""
    broker = make_broker(settings)
    try:
        if events is None:
            enqueue_events(broker, ids)
            return
        keys = {e["id"]: e["data"]["object"]["customer"] for e in events}
        pairs = [(i, keys[i]) for i in ids]
        for start in range(0, len(pairs), 10):
            broker.enqueue(events_message(pairs[start : start + 10]))
    finally:
        broker.close()


# How the tests below send their messages: one per id (retries, the sweeper, replays) or in
# batches (the receiver).
FORMS = pytest.mark.parametrize("batched", [False, True], ids=["one-per-message", "batched"])


def scrape(port: int, timeout: float = 20.0) -> str:
    """GET /metrics, waiting for the exposition server to listen."""
    found: list[str] = []

    def fetch() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                found.append(resp.read().decode())
                return True
        except OSError:
            return False

    wait_until(fetch, timeout, interval=0.2)
    return found[0]


def sample(text: str, prefix: str) -> float:
    """Sum of the samples whose line starts with `prefix`."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_backlog_of_200_over_20_customers_is_processed_in_creation_order_per_key(
    effects_db: str, env: dict[str, str], settings: Settings
) -> None:
    events = backlog(n_customers=20, per_customer=10, event_type=h.RECORD)
    store(effects_db, events)  # shuffled, while no worker runs; several share a second
    send(settings, [e["id"] for e in events])
    metrics_port = free_port()
    worker_env = {**env, "USER_HANDLERS": HANDLERS, "WORKER_METRICS_PORT": str(metrics_port)}
    with run_worker(worker_env, processes=2, threads=8):
        wait_until(lambda: finished(effects_db, 200), timeout=60)
        # Dramatiq's metrics and ours, from both processes, on one port (messages for a key
        # another thread drained may still be finishing: wait for all 200).
        texts: list[str] = []
        wait_until(
            lambda: (
                texts.append(scrape(metrics_port))
                or sample(texts[-1], "dramatiq_messages_total") == 200
            ),
            timeout=20,
            interval=0.2,
        )
        text = texts[-1]
    assert statuses(effects_db) == {"processed": 200}
    assert_creation_order(effects_db)
    assert set(effects(effects_db).values()) == {1} and len(effects(effects_db)) == 200
    assert (
        sample(text, 'stripe_events_finished_total{outcome="processed",type="test.worker.record"}')
        == 200
    )
    assert sample(text, "dramatiq_messages_total") == 200
    assert sample(text, 'stripe_event_lag_seconds_count{since="received"}') == 200
    assert sample(text, 'stripe_event_lag_seconds_count{since="enqueued"}') == 200
    assert sample(text, "stripe_events_backlog ") == 0
    assert sample(text, "stripe_ingest_database_up ") == 1
    # Read from Redis at scrape time: every message was taken and acknowledged.
    assert sample(text, "stripe_ingest_redis_up ") == 1
    assert 'stripe_queue_waiting_messages{queue="stripe-events"} 0.0' in text
    assert 'stripe_queue_messages{queue="stripe-events"} 0.0' in text


@FORMS
def test_each_event_sent_several_times_to_two_processes_has_its_effects_once(
    effects_db: str, env: dict[str, str], settings: Settings, batched: bool
) -> None:
    # Each effect takes 20 ms, so both processes are busy at once.
    events = backlog(n_customers=20, per_customer=5, event_type=h.RECORD, seed=11, sleep_ms=20)
    store(effects_db, events)
    ids = [e["id"] for e in events] * 4
    random.Random(5).shuffle(ids)
    with run_worker({**env, "USER_HANDLERS": HANDLERS}, processes=2, threads=8):
        send(settings, ids, events=events if batched else None)
        wait_until(lambda: finished(effects_db, 100), timeout=60)
        time.sleep(0.5)  # let the duplicate messages still in flight run too
    assert statuses(effects_db) == {"processed": 100}
    assert set(effects(effects_db).values()) == {1} and len(effects(effects_db)) == 100
    assert one(effects_db, "SELECT count(*) AS n FROM event_attempts")["n"] == 100
    if not batched:
        # Both worker processes took part. (A batched message's round drains whole keys, so one
        # process may finish every key before the other takes a message: not asserted then.)
        pids = {r["pid"] for r in query(effects_db, "SELECT pid FROM worker_test_effects")}
        assert len(pids) == 2
    assert_creation_order(effects_db)


@FORMS
def test_a_worker_killed_mid_handler_loses_nothing_and_the_sweeper_recovers_it_quickly(
    effects_db: str, env: dict[str, str], settings: Settings, tmp_path: Path, batched: bool
) -> None:
    marker = tmp_path / "blocked"
    events = [
        make_event("evt_k1", "cus_k", T0, h.BLOCK_ONCE, marker=marker),
        make_event("evt_k2", "cus_k", T0 + 1, h.RECORD),
        make_event("evt_o1", "cus_o", T0, h.RECORD),
    ]
    store(effects_db, events)
    lease = float(env["SWEEPER_LEASE_SECONDS"])
    sweeper_port = free_port()
    with (
        run_worker({**env, "USER_HANDLERS": HANDLERS}, processes=1, threads=4) as worker,
        run_sweeper({**env, "SWEEPER_METRICS_PORT": str(sweeper_port)}),
    ):
        send(settings, [e["id"] for e in events], events=events if batched else None)
        wait_until(lambda: marker.exists() and marker.read_text(), timeout=30)
        os.kill(int(marker.read_text()), signal.SIGKILL)  # the Dramatiq process running it
        killed_at = time.monotonic()
        wait_until(lambda: finished(effects_db, 3), timeout=DRAMATIQ_HEARTBEAT_TIMEOUT_S)
        recovered_in = time.monotonic() - killed_at
        assert worker.alive(), "the supervisor keeps running and restarted Dramatiq"
        # The message the killed process held is still unacked in Redis: the sweeper re-sent it.
        assert sample(scrape(sweeper_port), "stripe_sweeper_requeued_total") >= 1
    # Well inside Dramatiq's own re-delivery (heartbeat timeout): lease + sweep + restart.
    assert recovered_in < lease + 12, recovered_in
    assert "worker.child_exited" in worker.logs()
    assert statuses(effects_db) == {"processed": 3}
    assert effects(effects_db) == {"evt_k1": 1, "evt_k2": 1, "evt_o1": 1}
    k1 = one(effects_db, "SELECT attempts FROM stripe_events WHERE id = 'evt_k1'")
    assert k1["attempts"] == 1  # the killed attempt rolled back and left no trace
    assert_creation_order(effects_db)


def test_sigterm_lets_the_in_flight_event_finish(
    effects_db: str, env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    store(effects_db, [make_event("evt_s", "cus_s", T0, h.SLOW, marker=marker, sleep_s=2)])
    with run_worker({**env, "USER_HANDLERS": HANDLERS}, processes=1, threads=2) as worker:
        send(settings, ["evt_s"])
        wait_until(marker.exists, timeout=30)
        worker.send(signal.SIGTERM)
        wait_until(lambda: not worker.alive(), timeout=30)
        assert worker.proc.returncode == 0, worker.logs()
    row = one(effects_db, "SELECT status, attempts FROM stripe_events")
    assert row == {"status": "processed", "attempts": 1}
    assert effects(effects_db) == {"evt_s": 1}


def test_events_stored_while_redis_is_down_are_processed_through_the_sweeper(
    effects_db: str, env: dict[str, str]
) -> None:
    port, sweeper_port = free_port(), free_port()
    outage_env = {
        **env,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "SWEEPER_LEASE_SECONDS": "1",
        "SWEEPER_INTERVAL_SECONDS": "0.3",
        "SWEEPER_METRICS_PORT": str(sweeper_port),
        "USER_HANDLERS": HANDLERS,
    }
    events = backlog(n_customers=6, per_customer=5, event_type=h.RECORD, seed=2)
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(private_redis(port))
        stack.enter_context(run_worker(outage_env, processes=1, threads=4))
        stack.enter_context(run_sweeper(outage_env))
        first.stop()  # Redis goes down
        store(effects_db, events)  # the receiver stored them; its enqueue failed: no message
        time.sleep(2.5)  # past the lease: the sweeper tries, fails, and keeps going
        assert statuses(effects_db) == {"pending": 30}
        assert sample(scrape(sweeper_port), 'stripe_sweeper_passes_total{outcome="failed"}') >= 1
        stack.enter_context(private_redis(port))  # Redis is back, empty
        wait_until(lambda: finished(effects_db, 30), timeout=60)
        requeued = sample(scrape(sweeper_port), "stripe_sweeper_requeued_total")
    assert statuses(effects_db) == {"processed": 30}
    assert set(effects(effects_db).values()) == {1} and len(effects(effects_db)) == 30
    assert_creation_order(effects_db)
    assert requeued >= 6  # a key's head each time: its message drains the key


def test_retries_go_through_dramatiq_delayed_messages_and_a_poison_event_goes_dead(
    effects_db: str, env: dict[str, str], settings: Settings
) -> None:
    events = [
        make_event("evt_f1", "cus_f", T0, h.FLAKY, fail_times=2),
        make_event("evt_f2", "cus_f", T0, h.RECORD),
        make_event("evt_p1", "cus_p", T0, h.POISON),
        make_event("evt_p2", "cus_p", T0 + 1, h.RECORD),
        *[make_event(f"evt_o{i}", f"cus_o{i}", T0, h.RECORD, sleep_ms=50) for i in range(6)],
    ]
    store(effects_db, events)
    with run_worker({**env, "USER_HANDLERS": HANDLERS}, processes=1, threads=4):
        send(settings, [e["id"] for e in events])
        wait_until(lambda: finished(effects_db, len(events)), timeout=60)
    assert statuses(effects_db) == {"processed": 9, "dead": 1}
    f1 = query(
        effects_db,
        "SELECT attempt, outcome FROM event_attempts WHERE event_id = 'evt_f1' ORDER BY id",
    )
    assert [(r["attempt"], r["outcome"]) for r in f1] == [
        (1, "failed"),
        (2, "failed"),
        (3, "processed"),
    ]
    letter = one(effects_db, "SELECT attempts, error FROM dead_letters WHERE event_id = 'evt_p1'")
    assert letter == {
        "attempts": settings.worker_max_retries,
        "error": "ValueError: this event can never be processed",
    }
    assert set(effects(effects_db)) == {e["id"] for e in events} - {"evt_p1"}
    assert_creation_order(effects_db)
    # The other customers finished while the poison event was still being retried.
    dead_at = one(effects_db, "SELECT dead_at FROM dead_letters")["dead_at"]
    others = one(
        effects_db,
        "SELECT max(processed_at) AS t FROM stripe_events WHERE ordering_key LIKE 'cus_o%%'",
    )
    assert others["t"] < dead_at
