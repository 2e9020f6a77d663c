"""Queries of `backfill`: its runs (the resumable cursor) and staged events."""

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


def save_page(
    conn: Connection, run_id: int, payloads: Sequence[str], cursor: str | None, last: bool
) -> None:
    """Stage one fetched page and move the cursor past it, together."""
    with translated(), conn.transaction():
        row = conn.execute(
            "SELECT fetched FROM backfill_runs WHERE id = %s FOR UPDATE", (run_id,)
        ).fetchone()
        assert row is not None
        start = int(row["fetched"])
        conn.execute(
            "INSERT INTO backfill_events (run_id, position, payload)"
            " SELECT %s, %s + n - 1, p FROM unnest(%s::text[]) WITH ORDINALITY AS u(p, n)",
            (run_id, start, list(payloads)),
        )
        conn.execute(
            "UPDATE backfill_runs SET fetched = fetched + %s, cursor = %s, updated_at = now(),"
            " phase = CASE WHEN %s THEN 'storing' ELSE phase END WHERE id = %s",
            (len(payloads), cursor, last, run_id),
        )


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
            "DELETE FROM backfill_events WHERE (run_id, position) IN ("
            " SELECT run_id, position FROM backfill_events WHERE run_id = %s"
            " ORDER BY position DESC LIMIT %s) RETURNING position, payload",
            (run_id, size),
        ).fetchall()
        staged.sort(key=lambda r: -int(r["position"]))
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
