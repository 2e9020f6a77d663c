"""Fixtures for the receiver: the real app (lifespan included) behind httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.ingest.helpers import Stored, serve


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
