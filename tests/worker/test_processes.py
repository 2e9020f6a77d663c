"""Real `python -m worker` processes (Dramatiq on Redis) and the sweeper, against PostgreSQL."""

from __future__ import annotations

import time

from shared.broker import enqueue_events, make_broker
from shared.settings import Settings
from tests.procs import run_worker, wait_until
from tests.worker import handlers as h
from tests.worker.support import assert_creation_order, backlog, effects, statuses, store

HANDLERS = "tests.worker.handlers"


def finished(database_url: str, total: int) -> bool:
    counts = statuses(database_url)
    return sum(n for s, n in counts.items() if s != "pending") >= total


def test_backlog_of_200_over_20_customers_is_processed_in_creation_order_per_key(
    effects_db: str, env: dict[str, str], settings: Settings
) -> None:
    events = backlog(n_customers=20, per_customer=10, event_type=h.RECORD)
    store(effects_db, events)  # shuffled, while no worker runs
    broker = make_broker(settings)
    try:
        enqueue_events(broker, [e["id"] for e in events])
    finally:
        broker.close()
    started = time.monotonic()
    with run_worker({**env, "USER_HANDLERS": HANDLERS}, processes=2, threads=8):
        wait_until(lambda: finished(effects_db, 200), timeout=60)
    assert statuses(effects_db) == {"processed": 200}
    assert_creation_order(effects_db)
    assert len(effects(effects_db)) == 200
    print(f"200 events in {time.monotonic() - started:.1f}s")
