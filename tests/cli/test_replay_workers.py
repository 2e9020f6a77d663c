"""Replays end to end with real worker processes: a dead event is fixed and replayed by id, and
500 dead events are replayed by filter; each one's effect happens exactly once."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from shared.broker import enqueue_events, make_broker
from shared.settings import Settings
from tests.cli.clitools import corpus_events, kill, rows, run_cli, run_json, store_events
from tests.procs import run_worker, wait_until

CREATE_TABLES = """
CREATE TABLE cli_test_switch (fixed boolean NOT NULL);
INSERT INTO cli_test_switch VALUES (false);
CREATE TABLE cli_test_effects (event_id text NOT NULL, at timestamptz NOT NULL DEFAULT now());
"""

COUPON = "stripe-ruby-mock__coupon.created__1"
PAID = "stripe-ruby-mock__invoice.paid__1"

pytestmark = pytest.mark.slow


@pytest.fixture
def wenv(env: dict[str, str], database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        conn.execute(CREATE_TABLES)
    return {**env, "USER_HANDLERS": "tests.cli.flaky_handlers"}


@pytest.fixture
def worker(wenv: dict[str, str]) -> Iterator[None]:
    with run_worker(wenv, processes=1, threads=4):
        yield


def _fix(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE cli_test_switch SET fixed = true")


def _statuses(url: str, ids: list[str]) -> dict[str, int]:
    found = rows(
        url,
        "SELECT status, count(*) AS n FROM stripe_events WHERE id = ANY(%s) GROUP BY status",
        (ids,),
    )
    return {r["status"]: r["n"] for r in found}


def _effects(url: str) -> dict[str, int]:
    found = rows(url, "SELECT event_id, count(*) AS n FROM cli_test_effects GROUP BY event_id")
    return {r["event_id"]: r["n"] for r in found}


def test_a_dead_event_fixed_and_replayed_by_id_is_processed_once(
    wenv: dict[str, str], database_url: str, settings: Settings, worker: None
) -> None:
    ids = store_events(database_url, corpus_events(COUPON, 1))
    broker = make_broker(settings)
    try:
        enqueue_events(broker, ids)
    finally:
        broker.close()
    wait_until(lambda: _statuses(database_url, ids) == {"dead": 1}, timeout=30)
    (dead,) = run_json(wenv, "dead-letters", "list")["dead_letters"]
    assert dead["event_id"] == ids[0] and "broken" in dead["error"]
    assert _effects(database_url) == {}

    _fix(database_url)
    result = run_cli(wenv, "replay", ids[0])
    assert result.returncode == 0, result.stderr
    wait_until(lambda: _statuses(database_url, ids) == {"processed": 1}, timeout=30)
    assert _effects(database_url) == {ids[0]: 1}
    assert run_json(wenv, "dead-letters", "list")["dead_letters"] == []
    shown = run_json(wenv, "events", "show", ids[0])
    # The attempt log keeps the failed attempts from before the replay.
    outcomes = [a["outcome"] for a in shown["attempts"]]
    assert outcomes[-1] == "processed" and outcomes.count("processed") == 1
    assert len(outcomes) == int(wenv["WORKER_MAX_RETRIES"]) + 1
    assert shown["event"]["attempts"] == 1


def test_500_dead_events_replayed_by_filter_are_each_processed_once(
    wenv: dict[str, str], database_url: str, worker: None
) -> None:
    coupons = corpus_events(COUPON, 500, "c")
    for i, event in enumerate(coupons):
        event["data"]["object"]["id"] = f"coupon_{i % 40}"  # 40 ordering keys
    ids = store_events(database_url, coupons)
    others = store_events(database_url, corpus_events(PAID, 5, "p"))
    kill(database_url, ids + others, "RuntimeError: coupon handler is broken")
    _fix(database_url)

    plan = run_json(wenv, "replay", "--dead", "--type", "coupon.created", "--dry-run")
    assert plan["matched"] == 500
    result = run_cli(wenv, "replay", "--dead", "--type", "coupon.created", "--yes")
    assert result.returncode == 0, result.stderr
    assert "replayed 500 event(s), enqueued 500" in result.stdout
    wait_until(
        lambda: _statuses(database_url, ids) == {"processed": 500}, timeout=120, interval=0.5
    )
    effects = _effects(database_url)
    assert set(effects) == set(ids) and set(effects.values()) == {1}
    # What did not match the filter is still dead, with its dead letter.
    assert _statuses(database_url, others) == {"dead": 5}
    assert len(run_json(wenv, "dead-letters", "list")["dead_letters"]) == 5
    (audit,) = rows(database_url, "SELECT * FROM replay_audit")
    assert audit["mode"] == "dead" and audit["replayed"] == 500
    assert audit["filter"]["type"] == "coupon.created" and audit["finished_at"] is not None
