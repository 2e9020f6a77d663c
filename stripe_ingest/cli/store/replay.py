"""Queries of `replay` (and the console's replay): statuses, the audit row, the reset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

from stripe_ingest.cli.store.base import Connection, Filter, _all, _one, translated
from stripe_ingest.cli.store.events import list_dead


def statuses(conn: Connection, ids: Sequence[str]) -> dict[str, str]:
    rows = _all(conn, "SELECT id, status FROM stripe_events WHERE id = ANY(%s)", (list(ids),))
    return {r["id"]: r["status"] for r in rows}


def dead_ids(conn: Connection, f: Filter) -> list[str]:
    return [r["event_id"] for r in list_dead(conn, f)]


def start_audit(
    conn: Connection,
    who: str,
    mode: str,
    flt: dict[str, Any],
    forced: bool,
    matched: int,
    via: str = "cli",
) -> int:
    row = _one(
        conn,
        "INSERT INTO replay_audit (requested_by, mode, filter, forced, matched, via)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (who, mode, Jsonb(flt), forced, matched, via),
    )
    assert row is not None
    return int(row["id"])


def finish_audit(conn: Connection, audit_id: int) -> None:
    _all(
        conn, "UPDATE replay_audit SET finished_at = now() WHERE id = %s RETURNING id", (audit_id,)
    )


# Reset to pending in one statement; dead letters removed and the audit row counted in the same
# transaction. `allowed` guards against races with the worker: only rows still in these states.
_REPLAY: LiteralString = """
WITH reset AS (
    UPDATE stripe_events
       SET status = 'pending', attempts = 0, last_error = NULL, next_attempt_at = NULL,
           processed_at = NULL, process_seq = NULL, enqueued_at = now(), replayed_at = now()
     WHERE id = ANY(%(ids)s) AND status = ANY(%(allowed)s)
 RETURNING id
), gone AS (
    DELETE FROM dead_letters WHERE event_id IN (SELECT id FROM reset) RETURNING event_id
)
SELECT id FROM reset
"""


def replay_batch(conn: Connection, audit_id: int, ids: Sequence[str], force: bool) -> list[str]:
    """Put `ids` back to pending (dead ones; processed/ignored too when forced; pending ones are
    only re-stamped) and count them in the audit row, in one transaction."""
    allowed = ["dead", "processed", "ignored"] if force else ["dead"]
    with translated(), conn.transaction():
        reset = [r["id"] for r in conn.execute(_REPLAY, {"ids": list(ids), "allowed": allowed})]
        pending = [
            r["id"]
            for r in conn.execute(
                "UPDATE stripe_events SET enqueued_at = now()"
                " WHERE id = ANY(%s) AND status = 'pending' AND NOT id = ANY(%s) RETURNING id",
                (list(ids), reset),
            )
        ]
        done = reset + pending
        conn.execute(
            "UPDATE replay_audit SET replayed = replayed + %s, event_ids = event_ids || %s"
            " WHERE id = %s",
            (len(done), done, audit_id),
        )
    return done
