from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from tests.databases import temporary_database


@pytest.fixture
def reference_settings(template_db: str, settings: Settings) -> Iterator[Settings]:
    """A second fresh, migrated database (same Redis namespace): the in-order reference."""
    with temporary_database(f"si_ref_{uuid.uuid4().hex[:10]}", template=template_db) as url:
        yield settings.with_overrides(database_url=url)
