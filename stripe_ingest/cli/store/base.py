"""The CLI's connection and error translation, shared by its queries.

A database that does not answer becomes `DatabaseUnavailable` (exit 1, one line); any other
driver error becomes a `StoreError` with a one-line message (exit 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import click
import psycopg

from shared.db import Connection as Connection
from shared.db import DatabaseUnavailable, connect
from shared.errors import error_line

Row = dict[str, Any]
STATUSES = ("pending", "processed", "ignored", "dead")


class StoreError(click.ClickException):
    """A query failed for a reason other than the database being away."""


def _one_line(error: BaseException) -> str:
    return error_line(error, with_type=False)


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(_one_line(e)) from e
    except psycopg.errors.UndefinedTable as e:
        raise StoreError(f"{_one_line(e)} (run `stripe-ingest migrate`)") from e
    except psycopg.Error as e:
        raise StoreError(_one_line(e)) from e


@contextmanager
def session(url: str) -> Iterator[Connection]:
    """An autocommit connection; use `conn.transaction()` where several writes go together."""
    conn = connect(url, autocommit=True)
    try:
        with translated():
            yield conn
    finally:
        conn.close()


def _all(conn: Connection, query: LiteralString, params: Any = None) -> list[Row]:
    with translated():
        return list(conn.execute(query, params).fetchall())


def _one(conn: Connection, query: LiteralString, params: Any = None) -> Row | None:
    with translated():
        return conn.execute(query, params).fetchone()


@dataclass(frozen=True)
class Filter:
    """What `events list`, `dead-letters list` and `replay --dead` select (and the console).

    `customer` matches the customer's own events and those keyed by one of its charges (disputes,
    refunds); `error` is a dead letter's exact error; `resolved` selects resolved dead letters
    instead of the open ones; `offset` pages.
    """

    status: str | None = None
    type: str | None = None
    customer: str | None = None
    account: str | None = None  # the Connect account (`stripe_events.account`)
    since: datetime | None = None
    limit: int | None = None
    error: str | None = None
    resolved: bool = False
    offset: int = 0

    def as_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(self).items()}
