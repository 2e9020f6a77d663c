"""Real PostgreSQL and Redis for every test: a migrated template database cloned per test, and
a Redis database index with a namespace of the test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from shared.settings import Settings
from tests.databases import (
    REDIS_BASE_URL,
    create_database,
    delete_namespace,
    drop_database,
    free_redis_db,
    temporary_database,
)
from tests.procs import forget_recent, recent_logs

# Property tests: a few hundred cases on a developer's run, 5,000 in CI (which sets CI=true);
# `pytest --hypothesis-profile=ci` asks for CI's anywhere.
hypothesis_settings.register_profile("dev", max_examples=300, deadline=None, database=None)
hypothesis_settings.register_profile("ci", max_examples=5000, deadline=None, database=None)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")

SECRET = "whsec_test_primary_0123456789"
OTHER_SECRET = "whsec_test_rotated_9876543210"


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    name = f"si_tmpl_{uuid.uuid4().hex[:10]}"
    create_database(name)
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test, dropped afterwards."""
    with temporary_database(f"si_test_{uuid.uuid4().hex[:10]}", template=template_db) as url:
        yield url


@pytest.fixture(scope="session")
def redis_db() -> int:
    """An empty Redis database index; tests only ever delete their own namespaced keys."""
    return free_redis_db()


@pytest.fixture
def redis_url(redis_db: int) -> str:
    return f"{REDIS_BASE_URL}/{redis_db}"


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    namespace = f"si-test-{uuid.uuid4().hex[:10]}"
    yield namespace
    delete_namespace(redis_url, namespace)


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


# What the processes a failing test started logged, shown with its report.
@pytest.fixture(autouse=True)
def _fresh_process_logs() -> None:
    forget_recent()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed and call.when == "call":
        logs = recent_logs()
        if logs:
            report.sections.append(("processes", logs))
    return report
