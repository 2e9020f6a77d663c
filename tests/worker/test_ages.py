"""Ages that do not lie: after a bulk replay of events received days ago, the oldest-pending age
and the lag count from the replay (the latest enqueue), and the age since receipt is kept."""

from __future__ import annotations

import prometheus_client
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.settings import Settings
from tests.cli.clitools import corpus_events, kill, rows, run_cli, run_json, store_events
from worker.engine import Engine
from worker.gauges import DatabaseGauges
from worker.metrics import WorkerMetrics

PAID = "stripe-ruby-mock__invoice.paid__1"
DAY = 86400.0


def _gauges(url: str) -> dict[str, float]:
    return {m.name: m.samples[0].value for m in DatabaseGauges(url).collect()}


def test_a_bulk_replay_of_old_events_does_not_look_days_old(
    env: dict[str, str], effects_db: str, pool: ConnectionPool[Connection], settings: Settings
) -> None:
    ids = store_events(effects_db, corpus_events(PAID, 150))
    kill(effects_db, ids)
    rows(
        effects_db,
        "UPDATE stripe_events SET received_at = now() - interval '9 days' RETURNING id",
    )
    # A fresh event received a minute ago, untouched by the replay, is pending too.
    fresh = store_events(effects_db, corpus_events(PAID, 1, prefix="fresh"))
    rows(
        effects_db,
        "UPDATE stripe_events SET received_at = now() - interval '1 minute'"
        " WHERE id = %s RETURNING id",
        (fresh[0],),
    )

    replayed = run_json(env, "replay", "--dead", "--yes")
    assert replayed["replayed"] == 150

    stats = run_json(env, "stats")
    assert stats["backlog"] == 151
    # The fresh event, a minute old, is the oldest since its latest enqueue.
    assert 55 <= stats["oldest_pending_age_seconds"] < 600
    assert stats["oldest_pending_since_receipt_seconds"] >= 9 * DAY - 60
    text = run_cli(env, "stats")
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("oldest pending"))
    assert "since enqueued" in line and "9d00h since receipt" in line

    gauges = _gauges(effects_db)
    assert 55 <= gauges["stripe_events_oldest_pending_age_seconds"] < 600
    assert gauges["stripe_events_oldest_pending_since_receipt_seconds"] >= 9 * DAY - 60
    assert gauges["stripe_events_backlog"] == 151 and gauges["stripe_events_dead"] == 0

    registry = prometheus_client.CollectorRegistry()
    engine = Engine(
        pool=pool,
        settings=settings,
        enqueue=lambda *_: None,
        metrics=WorkerMetrics(registry),
        worker_id="ages",
    )
    for event_id in ids:
        engine.handle(event_id)

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    lag = "stripe_event_lag_seconds"
    # The key's events all ran (the fresh one too): within minutes of their latest enqueue,
    # and, all but the fresh one, nine days after their receipt.
    assert sample(f"{lag}_count", since="enqueued") == 151
    assert sample(f"{lag}_bucket", since="enqueued", le="300.0") == 151
    assert sample(f"{lag}_count", since="received") == 151
    assert sample(f"{lag}_bucket", since="received", le="86400.0") == 1
    assert _gauges(effects_db)["stripe_events_backlog"] == 0


def test_an_event_never_replayed_ages_from_its_receipt(effects_db: str) -> None:
    ids = store_events(effects_db, corpus_events(PAID, 2))
    rows(
        effects_db,
        "UPDATE stripe_events SET received_at = now() - interval '2 hours'"
        " WHERE id = %s RETURNING id",
        (ids[0],),
    )
    gauges = _gauges(effects_db)
    assert 7200 - 60 <= gauges["stripe_events_oldest_pending_age_seconds"] < 7200 + 600
    assert (
        abs(
            gauges["stripe_events_oldest_pending_since_receipt_seconds"]
            - gauges["stripe_events_oldest_pending_age_seconds"]
        )
        < 1
    )
