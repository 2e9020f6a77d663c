"""`stripe-ingest migrate`: apply `migrations/NNNN_*.sql` in order, once each.

Safe to run from several hosts at once: a session-level advisory lock serialises runners, and
each file is applied and recorded in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog
from psycopg import sql

from shared.db import DatabaseUnavailable, connect, database_name, with_database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# pg_advisory_lock key for migrations: any constant that our other locks never hash to.
_LOCK_KEY = 0x5354_5249_5045_4D49  # "STRIPEMI"

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(version=match.group(1), name=path.stem, path=path))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ValueError("two migration files share a version number")
    return found


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist. Returns True if it created it."""
    name = database_name(url)
    if not name:
        return False
    try:
        conn = connect(url, autocommit=True)
    except DatabaseUnavailable as e:
        if "does not exist" not in str(e):
            raise
    else:
        conn.close()
        return False
    with connect(with_database(url, "postgres"), autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False
        except psycopg.Error as e:
            raise DatabaseUnavailable(f"cannot create database {name}: {e}") from e
    log.info("migrate.database_created", database=name)
    return True


def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing; returns the names applied by this call."""
    ensure_database(url)
    migrations = discover(directory)
    applied: list[str] = []
    with connect(url, autocommit=True) as conn:
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration.name)
                log.info("migrate.applied", migration=migration.name)
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(str(e)) from e
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
