from __future__ import annotations

import threading

import psycopg

from shared.migrate import discover, migrate


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_a_migrated_database_has_the_contract_tables(database_url: str) -> None:
    assert {"stripe_events", "dead_letters", "schema_migrations"} <= _tables(database_url)
    with psycopg.connect(database_url) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'stripe_events'"
            )
        }
    assert {
        "id",
        "type",
        "created",
        "livemode",
        "api_version",
        "account",
        "ordering_key",
        "payload",
        "received_at",
        "status",
        "attempts",
        "last_error",
        "processed_at",
        "process_seq",
    } <= columns


def test_migrate_twice_in_a_row_applies_nothing_the_second_time(database_url: str) -> None:
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(discover()),)


def test_migrate_twice_at_once_leaves_one_schema(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(database_url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, 0, len(discover())]
    assert "stripe_events" in _tables(database_url)
