from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import psycopg
import pytest

from shared.db import with_database
from shared.migrate import MigrationError, discover, migrate
from tests.databases import ADMIN_URL


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


def test_the_shipped_migrations_are_the_files_of_the_migrations_directory() -> None:
    files = sorted(p for p in (Path(__file__).parents[2] / "migrations").glob("*.sql"))
    assert [m.name for m in discover()] == [p.stem for p in files]
    assert [m.path.read_text() for m in discover()] == [p.read_text() for p in files]


def test_without_migration_files_migrate_refuses_before_creating_the_database(
    tmp_path: Path,
) -> None:
    name = f"si_none_{uuid.uuid4().hex[:10]}"
    (tmp_path / "README").write_text("not a migration")

    with pytest.raises(MigrationError, match=r"^no migration files \(\*\.sql\) in "):
        migrate(with_database(ADMIN_URL, name), tmp_path)

    with psycopg.connect(ADMIN_URL) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row is None


def test_a_misnamed_migration_file_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "0001_events.sql").write_text("SELECT 1")
    (tmp_path / "7_oops.sql").write_text("SELECT 1")

    with pytest.raises(MigrationError, match=re.escape("must look like 0001_name.sql: 7_oops.sql")):
        discover(tmp_path)
