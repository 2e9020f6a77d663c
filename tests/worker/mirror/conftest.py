from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from shared.db import with_database
from shared.settings import Settings
from tests.conftest import ADMIN_URL


@pytest.fixture
def reference_settings(template_db: str, settings: Settings) -> Iterator[Settings]:
    """A second fresh, migrated database (same Redis namespace): the in-order reference."""
    name = f"si_ref_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield settings.with_overrides(database_url=with_database(ADMIN_URL, name))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
