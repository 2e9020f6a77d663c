"""The reliability scenarios' databases and processes: the web process runs under the least
privileged web role of deploy/postgres/roles.sql, workers and the sweeper under the worker role.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.databases import ADMIN_URL
from tests.reliability.handlers import EFFECTS_DDL

ROLES_SQL = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "roles.sql"
HANDLERS = "tests.reliability.handlers"


def as_user(url: str, user: str) -> str:
    params = conninfo_to_dict(url)
    params["user"] = user
    return make_conninfo("", **params)


@pytest.fixture
def rel_db(database_url: str) -> str:
    """The test database with the scenarios' effects table and the roles' grants."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(EFFECTS_DDL)
        conn.execute(ROLES_SQL.read_text())  # type: ignore[arg-type]
    return database_url


@pytest.fixture
def role_urls(rel_db: str) -> Iterator[dict[str, str]]:
    """DATABASE_URLs of login roles of this test's own, members of the web and worker roles."""
    suffix = uuid.uuid4().hex[:8]
    logins = {"web": f"si_web_{suffix}", "worker": f"si_worker_{suffix}"}
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for kind, login in logins.items():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    sql.Identifier(login), sql.Identifier(f"stripe_ingest_{kind}")
                )
            )
    try:
        yield {kind: as_user(rel_db, login) for kind, login in logins.items()}
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for login in logins.values():
                # Sessions of killed processes may linger a moment after they die.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (login,),
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


@pytest.fixture
def rel_env(env: dict[str, str], rel_db: str) -> dict[str, str]:
    """Settings for every process of a scenario (each kind gets its role's DATABASE_URL)."""
    return {
        **env,
        "USER_HANDLERS": HANDLERS,
        "WORKER_MAX_RETRIES": "3",
        "SWEEPER_LEASE_SECONDS": "2",
        "SWEEPER_INTERVAL_SECONDS": "0.3",
        "LOG_LEVEL": "info",
    }
