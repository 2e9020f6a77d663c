"""`purge`: finished events past retention go, in batches; pending and dead ones never do."""

from __future__ import annotations

import psycopg

from tests.cli.clitools import corpus_events, finish, kill, rows, run_cli, run_json, store_events

PAID = "stripe-ruby-mock__invoice.paid__1"


def test_purge_deletes_old_finished_events_only(env: dict[str, str], database_url: str) -> None:
    ids = store_events(database_url, corpus_events(PAID, 9))
    old_processed, old_ignored, fresh = ids[0:3], ids[3:5], ids[5:6]
    old_pending, old_dead = ids[6:7], ids[7:9]
    finish(database_url, old_processed, "processed", "10 days")
    finish(database_url, old_ignored, "ignored", "10 days")
    finish(database_url, fresh, "processed", "1 hour")
    kill(database_url, old_dead)
    with psycopg.connect(database_url) as conn:
        # Received long ago, and still pending or dead: must stay whatever their age.
        conn.execute(
            "UPDATE stripe_events SET received_at = now() - interval '40 days' WHERE id = ANY(%s)",
            (old_pending + old_dead,),
        )
        conn.execute(
            "INSERT INTO event_attempts (event_id, attempt, started_at, outcome)"
            " VALUES (%s, 1, now(), 'processed')",
            (old_processed[0],),
        )

    plan = run_json(env, "purge", "--older-than", "7d", "--dry-run")
    assert plan == {"older_than_seconds": 7 * 86400.0, "dry_run": True, "matched": 5, "deleted": 0}
    assert len(rows(database_url, "SELECT id FROM stripe_events")) == 9

    result = run_cli(env, "purge", "--older-than", "7d", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    assert "deleted 5 event(s)" in result.stdout
    left = {r["id"] for r in rows(database_url, "SELECT id FROM stripe_events")}
    assert left == set(fresh + old_pending + old_dead)
    assert rows(
        database_url,
        "SELECT count(*) AS n FROM event_attempts WHERE event_id = %s",
        (old_processed[0],),
    ) == [{"n": 0}]
    assert len(rows(database_url, "SELECT event_id FROM dead_letters")) == 2

    again = run_json(env, "purge", "--older-than", "30m")
    assert again["deleted"] == 1 and again["matched"] == 1
    assert {r["id"] for r in rows(database_url, "SELECT id FROM stripe_events")} == set(
        old_pending + old_dead
    )


def test_purging_more_than_the_threshold_asks_first(env: dict[str, str], database_url: str) -> None:
    ids = store_events(database_url, corpus_events(PAID, 5))
    finish(database_url, ids, "processed", "10 days")
    small = {**env, "REPLAY_CONFIRM_THRESHOLD": "4"}
    refused = run_cli(small, "purge", "--older-than", "7d")
    assert refused.returncode == 2
    assert "Delete 5 finished events (more than 4)?" in refused.stderr
    assert "pass --yes" in refused.stderr
    assert len(rows(database_url, "SELECT id FROM stripe_events")) == 5
    assert run_json(small, "purge", "--older-than", "7d", "--dry-run")["matched"] == 5
    assert run_json(small, "purge", "--older-than", "7d", "--yes")["deleted"] == 5
