"""Real PostgreSQL and Redis for every test: a migrated template database cloned per test, and
a Redis database index with a namespace of the test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from hypothesis import settings as hypothesis_settings
from psycopg import sql

from shared.db import with_database
from shared.migrate import migrate
from shared.settings import Settings

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Property tests: a few hundred cases by default; CI may run `pytest --hypothesis-profile=ci`.
hypothesis_settings.register_profile("dev", max_examples=300, deadline=None, database=None)
hypothesis_settings.register_profile("ci", max_examples=5000, deadline=None, database=None)
hypothesis_settings.load_profile("dev")

SECRET = "whsec_test_primary_0123456789"
OTHER_SECRET = "whsec_test_rotated_9876543210"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(ADMIN_URL, autocommit=True)


def _drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    name = f"si_tmpl_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        migrate(with_database(ADMIN_URL, name))
        yield name
    finally:
        _drop(name)


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test, dropped afterwards."""
    name = f"si_test_{uuid.uuid4().hex[:10]}"
    with _admin() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield with_database(ADMIN_URL, name)
    finally:
        _drop(name)


@pytest.fixture(scope="session")
def redis_db() -> int:
    """An empty Redis database index; tests only ever delete their own namespaced keys."""
    for index in range(15, 0, -1):
        client = redis.Redis.from_url(f"{TEST_REDIS_URL}/{index}")
        try:
            if client.dbsize() == 0:
                return index
        finally:
            client.close()
    return 15


@pytest.fixture
def redis_url(redis_db: int) -> str:
    return f"{TEST_REDIS_URL}/{redis_db}"


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    namespace = f"si-test-{uuid.uuid4().hex[:10]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def env(database_url: str, redis_url: str, redis_namespace: str) -> dict[str, str]:
    """The environment a process of ours gets in this test (for subprocesses too)."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": redis_namespace,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "WORKER_MIN_BACKOFF_MS": "50",
        "WORKER_MAX_BACKOFF_MS": "200",
        "WORKER_MAX_RETRIES": "3",
        "SWEEPER_LEASE_SECONDS": "3",
        "SWEEPER_INTERVAL_SECONDS": "0.5",
        "LOG_LEVEL": "warning",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(environ=env, env_file=None)
