"""Scrape-time gauges: Dramatiq's Redis queues as the broker lays them out, and events waiting
for a retry."""

from __future__ import annotations

import urllib.request
from typing import Any

import redis

from shared.broker import enqueue_events, make_broker
from shared.settings import Settings
from tests.cli.clitools import corpus_events, rows, store_events
from tests.procs import free_port, run_sweeper, run_worker, wait_until
from worker.gauges import BrokerGauges, DatabaseGauges

PAID = "stripe-ruby-mock__invoice.paid__1"


def _samples(collector: Any) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (s.name, tuple(s.labels.values())): s.value for m in collector.collect() for s in m.samples
    }


def test_queue_depth_counts_waiting_and_delayed_messages_of_our_namespace(
    settings: Settings,
) -> None:
    broker = make_broker(settings)
    try:
        enqueue_events(broker, ["evt_1", "evt_2", "evt_3"])
        enqueue_events(broker, ["evt_later"], delay_ms=60_000)
    finally:
        broker.close()
    # Another namespace's messages are not ours.
    other = make_broker(settings.with_overrides(redis_namespace=settings.redis_namespace + "x"))
    try:
        enqueue_events(other, ["evt_other"])
    finally:
        other.close()

    got = _samples(BrokerGauges(settings.redis_url, settings.redis_namespace))
    assert got[("stripe_ingest_redis_up", ())] == 1
    assert got[("stripe_queue_waiting_messages", ("stripe-events",))] == 3
    assert got[("stripe_queue_messages", ("stripe-events",))] == 3
    assert got[("stripe_queue_waiting_messages", ("stripe-events.DQ",))] == 1
    assert got[("stripe_queue_messages", ("stripe-events.DQ",))] == 1
    assert got[("stripe_queue_waiting_messages", ("notifications",))] == 0

    # A worker took one message (moved out of the list, not yet acknowledged).
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert client.lpop(f"{settings.redis_namespace}:stripe-events") is not None
    finally:
        client.close()
    got = _samples(BrokerGauges(settings.redis_url, settings.redis_namespace))
    assert got[("stripe_queue_waiting_messages", ("stripe-events",))] == 2
    assert got[("stripe_queue_messages", ("stripe-events",))] == 3


def test_broker_gauges_report_redis_down() -> None:
    got = _samples(BrokerGauges(f"redis://127.0.0.1:{free_port()}/0", "dramatiq"))
    assert got == {("stripe_ingest_redis_up", ()): 0}


def test_waiting_for_a_retry_counts_backed_off_events_not_claimed_ones(
    database_url: str,
) -> None:
    ids = store_events(database_url, corpus_events(PAID, 4))
    rows(
        database_url,
        "UPDATE stripe_events SET next_attempt_at = now() + interval '5 minutes'"
        " WHERE id = ANY(%s) RETURNING id",
        (ids[:2],),
    )
    # A claimed suspect (see worker.sql.COUNT_RUNNING) is running, not waiting for a retry.
    rows(
        database_url,
        "UPDATE stripe_events SET next_attempt_at = '9999-12-31 00:00:00+00'"
        " WHERE id = %s RETURNING id",
        (ids[2],),
    )
    got = _samples(DatabaseGauges(database_url))
    assert got[("stripe_events_backlog", ())] == 4
    assert got[("stripe_events_waiting_retry", ())] == 2


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_workers_and_sweeper_serve_metrics_on_metrics_host_only(env: dict[str, str]) -> None:
    """127.0.0.2 is loopback too (Linux routes 127/8 to lo): listening there, not on 127.0.0.1,
    shows the address is the one METRICS_HOST names."""
    worker_port, sweeper_port = free_port(), free_port()
    hosted = {
        **env,
        "METRICS_HOST": "127.0.0.2",
        "WORKER_METRICS_PORT": str(worker_port),
        "SWEEPER_METRICS_PORT": str(sweeper_port),
    }
    with run_worker(hosted, processes=1, threads=1), run_sweeper(hosted):
        wait_until(lambda: _answers("127.0.0.2", worker_port), timeout=20, interval=0.2)
        wait_until(lambda: _answers("127.0.0.2", sweeper_port), timeout=20, interval=0.2)
        assert not _answers("127.0.0.1", worker_port)
        assert not _answers("127.0.0.1", sweeper_port)
