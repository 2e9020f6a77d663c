"""Queries of the audit trails: replays (`replay_audit`) and resolutions of dead letters."""

from __future__ import annotations

from stripe_ingest.cli.store.base import Connection, Row, _all, _one

_REPLAY_COLUMNS = (
    "id, requested_by, via, started_at, finished_at, mode, filter, forced, matched, replayed"
)


def list_replays(conn: Connection, limit: int, offset: int = 0) -> list[Row]:
    """Replays, newest first."""
    return _all(
        conn,
        "SELECT " + _REPLAY_COLUMNS + " FROM replay_audit ORDER BY id DESC LIMIT %s OFFSET %s",
        (limit, offset),
    )


def count_replays(conn: Connection) -> int:
    row = _one(conn, "SELECT count(*) AS n FROM replay_audit")
    assert row is not None
    return int(row["n"])


def replays_of(conn: Connection, event_id: str) -> list[Row]:
    """The replays that put this event back to pending, oldest first."""
    return _all(
        conn,
        "SELECT " + _REPLAY_COLUMNS + " FROM replay_audit WHERE %s = ANY(event_ids) ORDER BY id",
        (event_id,),
    )


def resolutions_of(conn: Connection, event_id: str) -> list[Row]:
    """Every time this event's dead letter was resolved, oldest first."""
    return _all(
        conn,
        "SELECT resolved_at, resolved_by, via, resolution, error FROM dead_letter_resolutions"
        " WHERE event_id = %s ORDER BY resolved_at, id",
        (event_id,),
    )
