"""The one place the intake writes: a multi-row `INSERT ... ON CONFLICT DO NOTHING`."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from ingest.event import EventRow
from shared.db import AsyncConnection, Connection, DatabaseUnavailable
from shared.errors import error_line


class EventRejected(DatabaseUnavailable):
    """PostgreSQL refused a row for its content: its size (SQLSTATE class 54, e.g. an index entry
    over btree's limit), its data (22, e.g. a number jsonb cannot hold) or an integrity rule (23;
    the id conflict is not one, ON CONFLICT takes it). Retrying will not help; a subclass so that
    callers catching DatabaseUnavailable still do.
    """


# Any other failure (08 connection, 53 resources, 57P shutdown, 40 rollback...) is an outage.
_CONTENT_CLASSES = frozenset({"22", "23", "54"})


# Binary parameters (`%b`): a text-format array escapes every quote of every payload with a
# regex substitution in Python, ~30x the CPU of the whole binary statement for 4 KB events.
INSERT_EVENTS = """
INSERT INTO stripe_events
    (id, type, created, livemode, api_version, account, ordering_key, payload, enqueued_at,
     kind, endpoint, snapshot_event)
SELECT i, t, c, l, v, a, k, p::jsonb, now(), kd, ep, se
FROM unnest(
    %(ids)b::text[], %(types)b::text[], %(created)b::timestamptz[], %(livemode)b::boolean[],
    %(api_versions)b::text[], %(accounts)b::text[], %(keys)b::text[], %(payloads)b::text[],
    %(kinds)b::text[], %(endpoints)b::text[], %(snapshot_events)b::text[]
) AS r(i, t, c, l, v, a, k, p, kd, ep, se)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


def _params(rows: Sequence[EventRow]) -> dict[str, list[object]]:
    # In id order: two batches holding the same ids (a retry beside its original, a backfill
    # beside intake) then wait for each other's uncommitted rows in one order, never in a cycle.
    # In arrival order they can each insert one and wait for the other: a deadlock, a 503.
    rows = sorted(rows, key=lambda r: r.id)
    return {
        "ids": [r.id for r in rows],
        "types": [r.type for r in rows],
        "created": [r.created for r in rows],
        "livemode": [r.livemode for r in rows],
        "api_versions": [r.api_version for r in rows],
        "accounts": [r.account for r in rows],
        "keys": [r.ordering_key for r in rows],
        "payloads": [r.payload for r in rows],
        "kinds": [r.kind for r in rows],
        "endpoints": [r.endpoint for r in rows],
        "snapshot_events": [r.snapshot_event for r in rows],
    }


async def insert_events(conn: AsyncConnection, rows: Sequence[EventRow]) -> set[str]:
    """Insert and commit; returns the ids that are new. Raises DatabaseUnavailable."""
    if not rows:
        return set()
    try:
        if conn.autocommit:
            # One statement is its own transaction: its result arrives after the commit, in one
            # round trip instead of BEGIN, INSERT, COMMIT.
            cur = await conn.execute(INSERT_EVENTS, _params(rows), prepare=True)
            return {row["id"] for row in await cur.fetchall()}
        async with conn.transaction():
            cur = await conn.execute(INSERT_EVENTS, _params(rows), prepare=True)
            return {row["id"] for row in await cur.fetchall()}
    except psycopg.Error as e:
        raise _translate(e) from e


def insert_events_sync(conn: Connection, rows: Sequence[EventRow]) -> set[str]:
    """The same statement for synchronous callers (backfill, tests)."""
    if not rows:
        return set()
    try:
        with conn.transaction():
            cur = conn.execute(INSERT_EVENTS, _params(rows), prepare=True)
            return {row["id"] for row in cur.fetchall()}
    except psycopg.Error as e:
        raise _translate(e) from e


def _translate(error: psycopg.Error) -> DatabaseUnavailable:
    message = error_line(error, with_type=False)
    content = (error.sqlstate or "")[:2] in _CONTENT_CLASSES
    if content or isinstance(error, psycopg.DataError):  # client-side: a value it cannot send
        return EventRejected(message)
    return DatabaseUnavailable(message)
