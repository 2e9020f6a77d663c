from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg_pool import ConnectionPool

from shared.db import Connection, make_pool
from shared.settings import Settings
from tests.worker.support import Messages, create_effects_table
from worker.engine import Engine


@pytest.fixture
def effects_db(database_url: str) -> str:
    """The test database with the table the test handlers write their effects to."""
    create_effects_table(database_url)
    return database_url


@pytest.fixture
def pool(effects_db: str) -> Iterator[ConnectionPool[Connection]]:
    pool = make_pool(effects_db, min_size=1, max_size=10)
    pool.open(wait=True)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def messages() -> Messages:
    return Messages()


@pytest.fixture
def processor(pool: ConnectionPool[Connection], settings: Settings, messages: Messages) -> Engine:
    return Engine(pool=pool, settings=settings, enqueue=messages.enqueue, worker_id="test")
