"""Queries of `dead-letters summary` and `dead-letters resolve` (and the console's dead letters)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from stripe_ingest.cli.store.base import Connection, Filter, Row, _all, _one
from stripe_ingest.cli.store.events import DEAD_COLUMNS, DEAD_WHERE

_GROUPS: LiteralString = (
    "SELECT e.type, d.error, count(*) AS count, min(d.dead_at) AS oldest,"
    " max(d.dead_at) AS newest, min(e.id) AS example" + DEAD_WHERE + " GROUP BY e.type, d.error"
)


def summary(conn: Connection, f: Filter) -> list[Row]:
    """Dead letters grouped by event type and error: the largest groups first."""
    return _all(
        conn,
        _GROUPS + " ORDER BY count DESC, oldest, e.type, d.error LIMIT %(limit)s OFFSET %(offset)s",
        vars(f),
    )


# The first `per` open dead letters of each (type, error) group named, in the events' creation
# order, in one pass: a query per group read every dead letter of its type again.
_FIRST_OF_GROUPS: LiteralString = (
    "SELECT * FROM (SELECT " + DEAD_COLUMNS + ","
    """
           row_number() OVER (PARTITION BY e.type, d.error
                              ORDER BY e.created, e.received_at, e.id) AS n
    FROM dead_letters d
    JOIN stripe_events e ON e.id = d.event_id
    JOIN unnest(%(types)s::text[], %(errors)s::text[]) AS g(type, error)
      ON g.type = e.type AND g.error IS NOT DISTINCT FROM d.error
    WHERE e.status = 'dead' AND d.resolved_at IS NULL
) r WHERE n <= %(per)s ORDER BY n
"""
)


def first_of_groups(
    conn: Connection, groups: Sequence[tuple[str, str | None]], per: int
) -> dict[tuple[str, str | None], list[Row]]:
    """For each (type, error) group: its first `per` open dead letters (as `list_dead` gives
    them), in creation order."""
    found: dict[tuple[str, str | None], list[Row]] = {g: [] for g in groups}
    params = {"types": [t for t, _ in groups], "errors": [e for _, e in groups], "per": per}
    for row in _all(conn, _FIRST_OF_GROUPS, params):
        del row["n"]
        found[(row["type"], row["error"])].append(row)
    return found


def count_groups(conn: Connection, f: Filter) -> int:
    row = _one(conn, "SELECT count(*) AS n FROM (" + _GROUPS + ") g", vars(f))
    assert row is not None
    return int(row["n"])


def dead_states(conn: Connection, ids: Sequence[str]) -> dict[str, Row]:
    """For each stored id: its status and, if it has a dead letter, who resolved it and when."""
    rows = _all(
        conn,
        "SELECT e.id, e.status, d.event_id IS NOT NULL AS lettered, d.resolved_at, d.resolved_by"
        " FROM stripe_events e LEFT JOIN dead_letters d ON d.event_id = e.id"
        " WHERE e.id = ANY(%s)",
        (list(ids),),
    )
    return {r["id"]: r for r in rows}


# Only dead events with an open dead letter; the log row goes in the same statement. A replay
# that removed the dead letter meanwhile leaves nothing to resolve (the row is skipped).
_RESOLVE: LiteralString = """
WITH done AS (
    UPDATE dead_letters d
       SET resolved_at = now(), resolved_by = %(who)s, resolution = %(reason)s
      FROM stripe_events e
     WHERE d.event_id = ANY(%(ids)s) AND e.id = d.event_id AND e.status = 'dead'
       AND d.resolved_at IS NULL
 RETURNING d.event_id, d.resolved_at, d.error
)
INSERT INTO dead_letter_resolutions (event_id, resolved_at, resolved_by, via, resolution, error)
SELECT event_id, resolved_at, %(who)s, %(via)s, %(reason)s, error FROM done
RETURNING event_id
"""


def resolve(
    conn: Connection, ids: Sequence[str], who: str, reason: str, via: str = "cli"
) -> list[str]:
    """Resolve the open dead letters among `ids`; returns the ids resolved."""
    params: dict[str, Any] = {"ids": list(ids), "who": who, "reason": reason, "via": via}
    return [r["event_id"] for r in _all(conn, _RESOLVE, params)]
