"""Queries of `reconcile`: the mirror's rows before and after Stripe's objects are written, the
rows Stripe did not list, and the run's audit row (`reconcile_runs`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from stripe_ingest.cli.store.base import Connection, Row, _one, translated
from worker.mirror import objects


def start_reconcile(
    conn: Connection, who: str, since: datetime | None, livemode: bool, fix: bool
) -> int:
    row = _one(
        conn,
        "INSERT INTO reconcile_runs (requested_by, since, livemode, fix)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (who, since, livemode, fix),
    )
    assert row is not None
    return int(row["id"])


def finish_reconcile(
    conn: Connection,
    run_id: int,
    outcome: str,
    counts: dict[str, Any],
    drifted: int,
    fixed_ids: Sequence[str],
    error: str | None = None,
) -> None:
    _one(
        conn,
        "UPDATE reconcile_runs SET finished_at = now(), outcome = %s, counts = %s,"
        " drifted = %s, fixed = %s, fixed_ids = %s, error = %s WHERE id = %s RETURNING id",
        (outcome, Jsonb(counts), drifted, len(fixed_ids), list(fixed_ids), error, run_id),
    )


def _by_id(conn: Connection, table: str, ids: list[str]) -> dict[str, Row]:
    query = sql.SQL("SELECT * FROM {} WHERE id = ANY(%s)").format(sql.Identifier(table))
    return {r["id"]: r for r in conn.execute(query, (ids,)).fetchall()}


def write_objects(
    conn: Connection, table: str, rows: Sequence[Row], keep: bool
) -> tuple[dict[str, Row], dict[str, Row]]:
    """The mirror's rows of `rows` before and after their upserts, in one transaction, kept
    (`keep`, --fix) or rolled back: what a fix changes, found by the fix itself."""
    ids = [r["id"] for r in rows]
    with translated(), conn.transaction(force_rollback=not keep):
        before = _by_id(conn, table, ids)
        with conn.pipeline():
            for row in rows:
                objects.write(conn, table, row)
        after = _by_id(conn, table, ids)
    return before, after


def mirror_ids(
    conn: Connection, table: str, since: datetime | None, until: datetime, livemode: bool
) -> list[Row]:
    """Rows Stripe's list should hold: the key's mode, created in [since, until], last written
    from the platform account (not a Connect account's event); deleted customers left out
    (Stripe does not list them)."""
    query = sql.SQL(
        "SELECT t.id, t.livemode FROM {} t"
        " LEFT JOIN stripe_events e ON e.id = t.source_event_id"
        " WHERE t.livemode = %(livemode)s AND e.account IS NULL"
        " AND (%(since)s::timestamptz IS NULL OR t.created >= %(since)s)"
        " AND (t.created IS NULL OR t.created <= %(until)s)"
        " AND NOT ({}) ORDER BY t.id"
    ).format(
        sql.Identifier(table),
        sql.SQL("t.deleted" if table == "customers" else "false"),
    )
    with translated():
        return list(conn.execute(query, {"livemode": livemode, "since": since, "until": until}))
