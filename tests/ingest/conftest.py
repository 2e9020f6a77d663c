"""Fixtures for the receiver: the real app (lifespan included) behind httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import psycopg
import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.ingest.helpers import HOLD_TRIGGER, LOCK, Stored, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def stored(database_url: str, redis_url: str, redis_namespace: str) -> Stored:
    return Stored(database_url, redis_url, redis_namespace)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The receiver with the test's settings, lifespan running."""
    async with serve(create_app(settings)) as c:
        yield c


@pytest.fixture
def hold(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """The hold trigger installed and its advisory lock held; released at the end."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(HOLD_TRIGGER)
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        try:
            yield conn
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")
