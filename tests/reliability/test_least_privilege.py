"""deploy/postgres/roles.sql: the web role can only insert and read events; the worker role
reads and writes what processing needs and cannot change the schema."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.conftest import SECRET
from tests.procs import run_web, run_worker, wait_until
from tests.reliability.handlers import RECORD
from tests.reliability.harness import Sender, rows
from tests.worker.support import T0, make_event


def test_web_under_the_web_role_stores_events_and_can_do_nothing_else(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    event = make_event("evt_priv", "cus_priv", T0, RECORD)
    with run_web({**rel_env, "DATABASE_URL": role_urls["web"]}) as base_url:
        sender = Sender(base_url, SECRET, concurrency=1)
        sender.send_all([event])
    assert sender.deliveries["evt_priv"].statuses == [200]
    assert rows(rel_db, "SELECT status FROM stripe_events") == [{"status": "pending"}]
    with psycopg.connect(role_urls["web"], autocommit=True) as conn:
        for statement in (
            "UPDATE stripe_events SET status = 'processed'",
            "DELETE FROM stripe_events",
            "SELECT * FROM customers",
            "SELECT * FROM dead_letters",
            "CREATE TABLE web_was_here (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]


def test_workers_under_the_worker_role_process_events_but_cannot_change_the_schema(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    with psycopg.connect(rel_db, autocommit=True) as conn:
        event = make_event("evt_w", "cus_w", T0, RECORD)
        conn.execute(
            "INSERT INTO stripe_events (id, type, created, livemode, ordering_key, payload)"
            " VALUES (%s, %s, to_timestamp(%s), false, %s, %s)",
            (event["id"], event["type"], T0, "cus_w", json.dumps(event)),
        )
    worker_env = {**rel_env, "DATABASE_URL": role_urls["worker"]}
    with run_worker(worker_env, processes=1, threads=2):
        from shared.broker import enqueue_events, make_broker
        from shared.settings import Settings

        broker = make_broker(Settings.from_mapping(worker_env))
        try:
            enqueue_events(broker, ["evt_w"])
        finally:
            broker.close()
        wait_until(
            lambda: rows(rel_db, "SELECT status FROM stripe_events")[0]["status"] == "processed",
            timeout=30,
        )
    with psycopg.connect(role_urls["worker"], autocommit=True) as conn:
        for statement in (
            "DROP TABLE rel_effects",
            "ALTER TABLE stripe_events ADD COLUMN x int",
            "DELETE FROM schema_migrations",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[arg-type]
