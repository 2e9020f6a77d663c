"""What `events list` and `stats` say once stripe_events holds more than they count exactly."""

from __future__ import annotations

import psycopg

from stripe_ingest.cli.store import COUNT_CAP
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
