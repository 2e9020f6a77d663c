"""Throwaway PostgreSQL databases and Redis namespaces, for the tests and the benchmarks.

Each caller drops or deletes what it created, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psycopg
import redis
from psycopg import sql

from shared.db import with_database
from shared.migrate import migrate

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")


def admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(ADMIN_URL, autocommit=True)


def create_database(name: str, *, template: str | None = None) -> str:
    """Database `name` as a copy of `template`, or else freshly migrated; returns its URL."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with admin() as conn:
        conn.execute(statement)
    url = with_database(ADMIN_URL, name)
    if template is None:
        try:
            migrate(url)
        except BaseException:
            drop_database(name)
            raise
    return url


def drop_database(name: str) -> None:
    with admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def temporary_database(name: str, *, template: str | None = None) -> Iterator[str]:
    """`create_database`, yielding its URL; dropped on exit."""
    url = create_database(name, template=template)
    try:
        yield url
    finally:
        drop_database(name)


def free_redis_db(top: int = 15) -> int:
    """An empty Redis database index, from `top` down (keys are namespaced anyway)."""
    for index in range(top, 0, -1):
        client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{index}")
        try:
            if client.dbsize() == 0:
                return index
        finally:
            client.close()
    return top


def delete_namespace(redis_url: str, namespace: str) -> None:
    """Every key of `namespace` (a Dramatiq namespace: its keys start with it)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
