"""PostgreSQL connections: pools for the long-running processes, driver errors translated here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from shared.errors import DatabaseUnavailable, error_line

__all__ = [
    "DatabaseUnavailable",
    "connect",
    "connection",
    "error_line",
    "make_async_pool",
    "make_pool",
]

Connection = psycopg.Connection[DictRow]
AsyncConnection = psycopg.AsyncConnection[DictRow]


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 5) -> Connection:
    try:
        return psycopg.connect(
            url, autocommit=autocommit, row_factory=dict_row, connect_timeout=connect_timeout
        )
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(error_line(e, with_type=False)) from e


@contextmanager
def connection(url: str, *, autocommit: bool = False) -> Iterator[Connection]:
    conn = connect(url, autocommit=autocommit)
    try:
        yield conn
    finally:
        conn.close()


def make_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, name: str = ""
) -> ConnectionPool[Connection]:
    """A pool that is not opened yet: call `.open()` where the process starts. Its connections
    parse json/jsonb with orjson (several times faster than the standard library's json for
    the payloads the workers read)."""
    return ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name or None,
        kwargs={"row_factory": dict_row, "connect_timeout": 5},
        connection_class=psycopg.Connection[DictRow],
        configure=_use_orjson,
    )


def _use_orjson(conn: Connection) -> None:
    set_json_loads(orjson.loads, conn)
    set_json_dumps(_orjson_dumps, conn)


def _orjson_dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # e.g. an integer beyond 64 bits, a Decimal: the standard library's json
        return json.dumps(value).encode()


def make_async_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, name: str = ""
) -> AsyncConnectionPool[AsyncConnection]:
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name or None,
        kwargs={"row_factory": dict_row, "connect_timeout": 5},
        connection_class=psycopg.AsyncConnection[DictRow],
    )


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "")


def with_database(url: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)
