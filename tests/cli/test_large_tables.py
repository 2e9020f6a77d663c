"""What `events list` and `stats` say once stripe_events holds more than they count exactly."""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from stripe_ingest.cli.store import COUNT_CAP, overview, session
from stripe_ingest.cli.store.events import EXACT_UP_TO
from tests.cli.clitools import run_cli, run_json

# Minimal finished events (the commands read the columns, not the payload), `n` of them.
FILL = """
INSERT INTO stripe_events (id, type, created, ordering_key, payload, status, attempts,
                           processed_at)
SELECT 'evt_big_' || i, 'invoice.paid', now() - make_interval(secs => i),
       'cus_big' || (i %% 1000), '{}', %(status)s, 1,
       CASE WHEN %(status)s = 'processed' THEN now() - interval '1 hour' END
FROM generate_series(%(start)s::int, %(start)s::int + %(n)s - 1) AS i
"""


def fill(url: str, n: int, status: str = "processed", start: int = 1) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(FILL, {"n": n, "status": status, "start": start})
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE stripe_events")


def test_listing_past_the_cap_says_more_than_and_a_customer_is_counted_exactly(
    env: dict[str, str], database_url: str
) -> None:
    fill(database_url, COUNT_CAP + 50)
    listed = run_json(env, "events", "list", "--limit", "5")
    assert listed["shown"] == 5 and listed["total"] == COUNT_CAP + 1 and listed["total_capped"]
    human = run_cli(env, "events", "list", "--limit", "5")
    assert human.returncode == 0, human.stderr
    assert f"5 of more than {COUNT_CAP} shown" in human.stdout
    # cus_big7 keys every thousandth event: 11 of them, all counted.
    mine = run_json(env, "events", "list", "--customer", "cus_big7", "--limit", "3")
    assert mine["shown"] == 3 and mine["total"] == 11 and "total_capped" not in mine
    assert all(e["ordering_key"] == "cus_big7" for e in mine["events"])
    stats = run_json(env, "stats")
    assert not stats["counts_estimated"]
    assert stats["counts"]["processed"] == COUNT_CAP + 50


def test_stats_estimates_finished_counts_of_a_big_table_but_counts_pending_and_dead(
    env: dict[str, str], database_url: str
) -> None:
    fill(database_url, 7, "pending")
    fill(database_url, 3, "dead", start=100)
    fill(database_url, EXACT_UP_TO + 1000, start=1000)
    stats = run_json(env, "stats")
    assert stats["counts_estimated"]
    assert stats["counts"]["pending"] == 7 and stats["backlog"] == 7
    assert stats["counts"]["dead"] == 3
    assert abs(stats["counts"]["processed"] - (EXACT_UP_TO + 1000)) < (EXACT_UP_TO + 1000) * 0.02
    assert stats["counts"]["ignored"] == 0


# Finished as workers finish them: process_seq taken in processed_at order, over 4 minutes.
RECENT = """
INSERT INTO stripe_events (id, type, created, ordering_key, payload, status, attempts,
                           processed_at, process_seq, api_version, received_at)
SELECT 'evt_recent_' || i, 'invoice.paid', now(), 'cus_r' || (i %% 100), '{}', 'processed', 1,
       now() - interval '4 minutes' + make_interval(secs => i * 240.0 / %(n)s),
       nextval('process_seq'), CASE WHEN i > %(n)s - 10 THEN '2099-01-01.future' END,
       now() - interval '4 minutes' + make_interval(secs => i * 240.0 / %(n)s - 2)
FROM generate_series(1, %(n)s) AS i
"""
EXACT = """
SELECT date_trunc('minute', processed_at) AS minute, count(*) AS n FROM stripe_events
WHERE processed_at >= now() - interval '5 minutes' GROUP BY 1 ORDER BY 1
"""


def test_stats_counts_a_busy_window_exactly_by_probing_minutes_not_reading_it(
    env: dict[str, str], database_url: str
) -> None:
    n = 30_000
    fill(database_url, EXACT_UP_TO // 10, start=1000)  # an hour old: outside the window
    with psycopg.connect(database_url) as conn:
        conn.execute(RECENT, {"n": n})
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE stripe_events")
        exact = [(r[0], r[1]) for r in conn.execute(EXACT).fetchall()]
        plans = {
            q: "\n".join(r[0] for r in conn.execute("EXPLAIN " + q, {"minutes": 5, "sample": 1000}))
            for q in (overview._THROUGHPUT, "SELECT api_version" + overview._LATEST)
        }
    stats = run_json(env, "stats")
    assert stats["throughput"]["finished"] == n
    counted = [(m["minute"], m["finished"]) for m in stats["throughput"]["by_minute"]]
    assert [(datetime.fromisoformat(m), k) for m, k in counted if k] == exact
    assert stats["unknown_api_versions"] == [{"api_version": "2099-01-01.future", "events": 10}]
    # One probe per minute, and the latest SAMPLE finishes read backwards: never the window.
    for plan in plans.values():
        assert "Index Scan" in plan and "stripe_events_processed_at" in plan, plan
        assert "Seq Scan on stripe_events" not in plan and "Bitmap" not in plan, plan
    assert "Backward" in plans["SELECT api_version" + overview._LATEST]
    with session(database_url) as conn:
        lag = overview.recent_lag(conn, 5)
    assert lag["sampled"] == overview.SAMPLE
    assert lag["p50_seconds"] == pytest.approx(2.0, abs=0.01)
