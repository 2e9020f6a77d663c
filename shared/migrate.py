"""`stripe-ingest migrate`: apply `migrations/NNNN_*.sql` in order, once each.

The files ship inside the package as `shared.migrations` (pyproject maps that package onto the
top-level `migrations/` directory) and are read through importlib.resources, so an installed
wheel finds them as a checkout does.

Safe to run from several hosts at once: a session-level advisory lock serialises runners, and
each file is applied and recorded in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import psycopg
import structlog
from psycopg import sql

from shared.db import DatabaseUnavailable, connect, database_name, with_database

MIGRATIONS_PACKAGE = "shared.migrations"
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# pg_advisory_lock key for migrations: any constant that our other locks never hash to.
_LOCK_KEY = 0x5354_5249_5045_4D49  # "STRIPEMI"

log = structlog.get_logger(__name__)


class MigrationError(Exception):
    """The migration files are missing or misnamed: the installation's fault, one line."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Traversable


def _shipped() -> Traversable:
    try:
        return files(MIGRATIONS_PACKAGE)
    except ModuleNotFoundError as e:
        raise MigrationError(
            f"no migration files: package {MIGRATIONS_PACKAGE} is not installed"
        ) from e


def discover(directory: Traversable | None = None) -> list[Migration]:
    """The migration files in `directory` (default: the shipped ones), in order; never none."""
    where = _shipped() if directory is None else directory
    found = []
    for path in sorted(
        (p for p in where.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name
    ):
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append(Migration(version=match.group(1), name=path.name[:-4], path=path))
    if not found:
        raise MigrationError(
            f"no migration files (*.sql) in {where}: the installation is incomplete"
        )
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError("two migration files share a version number")
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


def migrate(url: str, directory: Traversable | None = None) -> list[str]:
    """Apply what is missing; returns the names applied by this call."""
    migrations = discover(directory)
    ensure_database(url)
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
