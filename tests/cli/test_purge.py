"""`purge`: finished events past retention go, in batches; pending and dead ones never do."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg

from stripe_ingest.cli.store import purge_batch, purge_cutoff, session
from stripe_ingest.cli.store.purge import PURGE_BATCH
from tests.cli.clitools import (
    cli_env,
    corpus_events,
    finish,
    kill,
    rows,
    run_cli,
    run_json,
    store_events,
)
from tests.procs import wait_until

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


def test_purge_stops_after_its_batch_on_sigterm_and_resumes(
    env: dict[str, str], database_url: str
) -> None:
    ids = store_events(database_url, corpus_events(PAID, 8))
    old, kept = ids[:6], ids[6:]
    finish(database_url, old, "processed", "10 days")
    kill(database_url, kept)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO event_attempts (event_id, attempt, started_at, outcome)"
            " SELECT id, 1, now(), 'processed' FROM unnest(%s::text[]) id",
            (old,),
        )
    args = ["purge", "--older-than", "7d", "--yes", "--batch-size", "1", "--pause", "30"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stripe_ingest.cli.main", *args],
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    count = "SELECT count(*) AS n FROM stripe_events WHERE id = ANY(%s)"
    try:
        # The first batch is committed, then purge waits out its pause: stop it there.
        wait_until(lambda: rows(database_url, count, (old,)) == [{"n": 5}], timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "stopped after 1 event(s); run it again to go on" in err
    assert "deleted 1 event(s)" in out
    # Nothing half-done: every event left has its attempt row, the deleted one has none.
    attempts = "SELECT count(*) AS n FROM event_attempts WHERE event_id = ANY(%s)"
    assert rows(database_url, attempts, (old,)) == [{"n": 5}]

    again = run_json(env, "purge", "--older-than", "7d", "--yes", "--batch-size", "2")
    assert again["matched"] == 5 and again["deleted"] == 5
    assert {r["id"] for r in rows(database_url, "SELECT id FROM stripe_events")} == set(kept)
    assert len(rows(database_url, "SELECT event_id FROM dead_letters")) == 2


def test_purge_batches_read_the_finished_index_not_the_table(database_url: str) -> None:
    # Enough rows that reading all of them (a scan, or the whole range and a sort) costs more
    # than the index's first rows; most are old and finished, some pending and dead.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO stripe_events (id, type, created, ordering_key, payload, status,"
            " processed_at)"
            " SELECT 'evt_' || g, 'invoice.paid', now(), 'cus_' || g % 100, '{}',"
            " (ARRAY['processed', 'ignored', 'pending', 'dead'])[1 + g % 4],"
            " CASE WHEN g % 4 < 2 THEN now() - interval '40 days' + g * interval '1 s' END"
            " FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE stripe_events")
    with session(database_url) as conn:
        cutoff = purge_cutoff(conn, timedelta(days=30))
        for after in (datetime(1, 1, 1, tzinfo=UTC), cutoff - timedelta(days=5)):
            params = {"cutoff": cutoff, "after": after, "size": 1000}
            plan = "\n".join(
                r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + PURGE_BATCH, params)
            )
            assert "Index Scan using stripe_events_processed_at" in plan, plan
            assert "Seq Scan" not in plan and "Sort" not in plan, plan
        # Batch after batch from where the last ended, oldest first, finished events only.
        n, after = purge_batch(conn, cutoff, datetime(1, 1, 1, tzinfo=UTC), 1000)
        assert n == 1000
        n, after2 = purge_batch(conn, cutoff, after, 1000)
        assert n == 1000 and after2 > after
    assert rows(
        database_url,
        "SELECT status, count(*) AS n FROM stripe_events GROUP BY status ORDER BY status",
    ) == [
        {"status": "dead", "n": 5000},
        {"status": "ignored", "n": 4000},
        {"status": "pending", "n": 5000},
        {"status": "processed", "n": 4000},
    ]
