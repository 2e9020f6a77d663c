"""Queries of `backfill`: its runs, their segments (each with its resumable cursor) and staged
events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from stripe_ingest.cli.store.base import Connection, Row, _one, translated


def open_run(
    conn: Connection, types: Sequence[str], undelivered: bool, account: str | None = None
) -> Row | None:
    """The newest unfinished run with the same type, delivery and account filter, if any."""
    return _one(
        conn,
        "SELECT * FROM backfill_runs WHERE phase IN ('fetching', 'storing')"
        " AND types = %s AND undelivered_only = %s AND account IS NOT DISTINCT FROM %s"
        " ORDER BY id DESC LIMIT 1",
        (sorted(types), undelivered, account),
    )


def abandon_run(conn: Connection, run_id: int) -> None:
    with translated(), conn.transaction():
        conn.execute("DELETE FROM backfill_events WHERE run_id = %s", (run_id,))
        conn.execute(
            "UPDATE backfill_runs SET phase = 'abandoned', updated_at = now() WHERE id = %s",
            (run_id,),
        )


def create_run(
    conn: Connection,
    who: str,
    since: datetime,
    types: Sequence[str],
    undelivered: bool,
    account: str | None = None,
) -> Row:
    row = _one(
        conn,
        "INSERT INTO backfill_runs (requested_by, since, types, undelivered_only, account)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING *",
        (who, since, sorted(types), undelivered, account),
    )
    assert row is not None
    return row


def plan_segments(
    conn: Connection,
    run_id: int,
    bounds: Sequence[tuple[int, int | None]],
    fetched: int = 0,
    cursor: str | None = None,
) -> list[Row]:
    """The run's segments: those it has, or else `bounds` (newest first) as new ones; a single
    bound carries the run's own `fetched` and `cursor` (a run interrupted before segments)."""
    with translated(), conn.transaction():
        have = conn.execute(
            "SELECT * FROM backfill_segments WHERE run_id = %s ORDER BY segment FOR UPDATE",
            (run_id,),
        ).fetchall()
        if have:
            return list(have)
        for n, (gte, lt) in enumerate(bounds):
            conn.execute(
                "INSERT INTO backfill_segments (run_id, segment, gte, lt, fetched, cursor)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (run_id, n, gte, lt, fetched if len(bounds) == 1 else 0, cursor),
            )
        return list(
            conn.execute(
                "SELECT * FROM backfill_segments WHERE run_id = %s ORDER BY segment", (run_id,)
            ).fetchall()
        )


def save_page(
    conn: Connection,
    run_id: int,
    segment: int,
    payloads: Sequence[str],
    cursor: str | None,
    last: bool,
) -> None:
    """Stage one fetched page of a segment and move the segment's cursor past it, together."""
    with translated(), conn.transaction():
        row = conn.execute(
            "SELECT fetched FROM backfill_segments WHERE run_id = %s AND segment = %s FOR UPDATE",
            (run_id, segment),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO backfill_events (run_id, segment, position, payload)"
            " SELECT %s, %s, %s + n - 1, p FROM unnest(%s::text[]) WITH ORDINALITY AS u(p, n)",
            (run_id, segment, int(row["fetched"]), list(payloads)),
        )
        conn.execute(
            "UPDATE backfill_segments SET fetched = fetched + %s, pages = pages + 1,"
            " cursor = %s, done = %s WHERE run_id = %s AND segment = %s",
            (len(payloads), cursor, last, run_id, segment),
        )
        conn.execute(
            "UPDATE backfill_runs SET fetched = fetched + %s, updated_at = now() WHERE id = %s",
            (len(payloads), run_id),
        )


def finish_fetching(conn: Connection, run_id: int) -> bool:
    """Move the run to 'storing' once every segment is done; False if one is not."""
    row = _one(
        conn,
        "UPDATE backfill_runs SET phase = 'storing', updated_at = now() WHERE id = %s"
        " AND phase = 'fetching' AND NOT EXISTS (SELECT 1 FROM backfill_segments"
        " WHERE run_id = %s AND NOT done) RETURNING id",
        (run_id, run_id),
    )
    return row is not None


def staged_count(conn: Connection, run_id: int) -> int:
    row = _one(conn, "SELECT count(*) AS n FROM backfill_events WHERE run_id = %s", (run_id,))
    assert row is not None
    return int(row["n"])


def store_chunk(
    conn: Connection,
    run_id: int,
    size: int,
    insert: Callable[[Connection, list[str]], set[str]],
) -> tuple[int, set[str]]:
    """Store the oldest `size` staged events with `insert` (the intake's), unstage them and count
    them, in one transaction. Returns (events taken, ids that were new)."""
    with translated(), conn.transaction():
        staged = conn.execute(
            "DELETE FROM backfill_events WHERE (run_id, segment, position) IN ("
            " SELECT run_id, segment, position FROM backfill_events WHERE run_id = %s"
            " ORDER BY segment DESC, position DESC LIMIT %s) RETURNING segment, position, payload",
            (run_id, size),
        ).fetchall()
        staged.sort(key=lambda r: (-int(r["segment"]), -int(r["position"])))
        new = insert(conn, [r["payload"] for r in staged])
        conn.execute(
            "UPDATE backfill_runs SET new_events = new_events + %s,"
            " duplicates = duplicates + %s, updated_at = now() WHERE id = %s",
            (len(new), len(staged) - len(new), run_id),
        )
    return len(staged), new


def finish_run(conn: Connection, run_id: int) -> Row:
    row = _one(
        conn,
        "UPDATE backfill_runs SET phase = 'done', finished_at = now(), updated_at = now()"
        " WHERE id = %s RETURNING *",
        (run_id,),
    )
    assert row is not None
    return row
