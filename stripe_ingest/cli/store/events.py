"""Queries of the inspection, stats and demo commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import LiteralString

from psycopg import sql

from stripe_ingest.cli.store.base import STATUSES, Connection, Filter, Row, _all, _one, translated
from stripe_ingest.cli.store.overview import finished_by_minute, recent_versions
from worker.mirror import versions

_EVENT_COLUMNS: LiteralString = (
    "e.id, e.type, e.status, e.attempts, e.created, e.received_at, e.processed_at,"
    " e.ordering_key, e.livemode, e.api_version, e.account, e.last_error, e.process_seq,"
    " e.next_attempt_at, e.enqueued_at, e.kind, e.endpoint, e.snapshot_event"
)
# A customer's events: keyed by it, or keyed by one of its charges (a dispute or a refund
# without a customer is keyed by its charge; the mirror knows whose charge it is). An event whose
# object names a customer is keyed by it (ingest.event.ordering_key), so its key says it all: one
# look-up per key in stripe_events_key_created (migrations/0014), whatever the table holds.
_CUSTOMER: LiteralString = (
    "(%(customer)s::text IS NULL OR e.ordering_key = ANY(ARRAY[%(customer)s::text] || ARRAY("
    "SELECT id FROM charges WHERE customer_id = %(customer)s"
    " UNION SELECT charge_id FROM disputes WHERE customer_id = %(customer)s"
    " UNION SELECT charge_id FROM refunds WHERE customer_id = %(customer)s)))"
)
_ACCOUNT: LiteralString = "(%(account)s::text IS NULL OR e.account = %(account)s)"
_EVENTS_WHERE: LiteralString = (
    " FROM stripe_events e"
    " WHERE (%(status)s::text IS NULL OR e.status = %(status)s)"
    " AND (%(type)s::text IS NULL OR e.type = %(type)s)"
    " AND (%(since)s::timestamptz IS NULL OR e.created >= %(since)s)"
    " AND " + _ACCOUNT + " AND " + _CUSTOMER
)


def list_events(conn: Connection, f: Filter) -> list[Row]:
    return _all(
        conn,
        "SELECT "
        + _EVENT_COLUMNS
        + _EVENTS_WHERE
        + " ORDER BY e.created DESC, e.received_at DESC, e.id DESC"
        " LIMIT %(limit)s OFFSET %(offset)s",
        vars(f),
    )


# Listings count their matches up to here: counting millions of stored events costs what is
# stored. Past it a count is COUNT_CAP + 1, shown as "more than COUNT_CAP".
COUNT_CAP = 10_000


def count_events(conn: Connection, f: Filter) -> int:
    """Matching events, up to COUNT_CAP + 1."""
    query: LiteralString = "SELECT count(*) AS n FROM (SELECT 1" + _EVENTS_WHERE
    query += " LIMIT %(cap)s) s"
    row = _one(conn, query, {**vars(f), "cap": COUNT_CAP + 1})
    assert row is not None
    return int(row["n"])


def get_event(conn: Connection, event_id: str) -> Row | None:
    return _one(
        conn,
        "SELECT " + _EVENT_COLUMNS + ", e.payload FROM stripe_events e WHERE e.id = %s",
        (event_id,),
    )


def attempts(conn: Connection, event_id: str) -> list[Row]:
    return _all(
        conn,
        "SELECT attempt, started_at, finished_at, outcome, error, worker"
        " FROM event_attempts WHERE event_id = %s ORDER BY started_at, id",
        (event_id,),
    )


def dead_letter(conn: Connection, event_id: str) -> Row | None:
    return _one(
        conn,
        "SELECT event_id, dead_at, attempts, error, traceback, replayed_at,"
        " resolved_at, resolved_by, resolution FROM dead_letters WHERE event_id = %s",
        (event_id,),
    )


# Open dead letters (or, with `resolved`, the resolved ones); `since` is when they died.
DEAD_WHERE: LiteralString = (
    " FROM dead_letters d JOIN stripe_events e ON e.id = d.event_id"
    " WHERE e.status = 'dead' AND (d.resolved_at IS NOT NULL) = %(resolved)s"
    " AND (%(type)s::text IS NULL OR e.type = %(type)s)"
    " AND (%(error)s::text IS NULL OR d.error = %(error)s)"
    " AND (%(since)s::timestamptz IS NULL OR d.dead_at >= %(since)s)"
    " AND " + _ACCOUNT + " AND " + _CUSTOMER
)


# A dead letter as the listings show it (`list_dead`, the console's groups).
DEAD_COLUMNS: LiteralString = (
    "d.event_id, e.type, e.ordering_key, e.created, d.dead_at, d.attempts, d.error,"
    " d.resolved_at, d.resolved_by, d.resolution"
)


def list_dead(conn: Connection, f: Filter) -> list[Row]:
    """Dead letters in the events' creation order."""
    return _all(
        conn,
        "SELECT "
        + DEAD_COLUMNS
        + DEAD_WHERE
        + " ORDER BY e.created, e.received_at, e.id LIMIT %(limit)s OFFSET %(offset)s",
        vars(f),
    )


def count_dead(conn: Connection, f: Filter) -> int:
    row = _one(conn, "SELECT count(*) AS n" + DEAD_WHERE, vars(f))
    assert row is not None
    return int(row["n"])


# Exact counts of processed and ignored events cost what is stored: past this many rows (the
# planner's estimate) they are the estimates of the latest ANALYZE. Pending and dead are exact.
EXACT_UP_TO = 200_000
_ESTIMATES: LiteralString = (
    "SELECT c.reltuples::bigint AS total, s.most_common_vals::text::text[] AS vals,"
    " s.most_common_freqs AS freqs FROM pg_class c"
    " LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname"
    " AND s.attname = 'status' WHERE c.oid = 'stripe_events'::regclass"
)
_FEW: LiteralString = "SELECT status, count(*) AS n FROM stripe_events WHERE status = %s GROUP BY 1"


def _status_counts(conn: Connection) -> tuple[dict[str, int], bool]:
    """Events per status, and whether processed/ignored are estimates."""
    counts = {s: 0 for s in STATUSES}
    est = _one(conn, _ESTIMATES)
    estimated = est is not None and est["total"] > EXACT_UP_TO and est["vals"] is not None
    if est is not None and estimated:
        freqs = dict(zip(est["vals"], est["freqs"], strict=True))
        counts |= {s: round(est["total"] * freqs.get(s, 0.0)) for s in ("processed", "ignored")}
        for status in ("pending", "dead"):  # their partial indexes: what is pending or dead
            counts |= {r["status"]: r["n"] for r in _all(conn, _FEW, (status,))}
        return counts, True
    for row in _all(conn, "SELECT status, count(*) AS n FROM stripe_events GROUP BY status"):
        counts[row["status"]] = row["n"]
    return counts, False


def stats(conn: Connection, minutes: int) -> Row:
    counts, estimated = _status_counts(conn)
    # Ages as the gauges count them (worker.sql.BACKLOG): from the latest enqueue (receipt or
    # replay), and from the first receipt.
    pending = _one(
        conn,
        "SELECT extract(epoch FROM now() - min(coalesce(replayed_at, received_at)))::float"
        " AS oldest_age,"
        " extract(epoch FROM now() - min(received_at))::float AS oldest_since_receipt,"
        " count(*) FILTER (WHERE next_attempt_at > now()"
        " AND next_attempt_at < '9999-12-31 00:00:00+00') AS waiting_retry"
        " FROM stripe_events WHERE status = 'pending'",
    )
    finished = finished_by_minute(conn, minutes)
    dead = _one(
        conn,
        "SELECT count(*) FILTER (WHERE d.resolved_at IS NULL) AS n,"
        " count(*) FILTER (WHERE d.resolved_at IS NOT NULL) AS resolved"
        " FROM dead_letters d JOIN stripe_events e ON e.id = d.event_id WHERE e.status = 'dead'",
    )
    by_version = recent_versions(conn, minutes)
    assert pending is not None and dead is not None
    total = sum(r["n"] for r in finished)
    return {
        "counts": counts,
        "counts_estimated": estimated,
        "total": sum(counts.values()),
        "backlog": counts["pending"],
        "waiting_retry": pending["waiting_retry"],
        "oldest_pending_age_seconds": pending["oldest_age"],
        "oldest_pending_since_receipt_seconds": pending["oldest_since_receipt"],
        "dead": dead["n"],
        "dead_resolved": dead["resolved"],
        "throughput": {
            "minutes": minutes,
            "finished": total,
            "per_minute": round(total / minutes, 2),
            "by_minute": [{"minute": r["minute"], "finished": r["n"]} for r in finished],
        },
        "unknown_api_versions": [
            {"api_version": r["api_version"], "events": r["n"]}
            for r in by_version
            if not versions.is_known(r["api_version"])
        ],
    }


# Demo -----------------------------------------------------------------------------------------


def progress(conn: Connection, ids: Sequence[str]) -> list[Row]:
    """Each id's state, in the order given: status (null when not stored), attempts so far and
    the last error."""
    return _all(
        conn,
        "SELECT i AS id, e.type, e.status, coalesce(e.attempts, 0) AS attempts, e.last_error"
        " FROM unnest(%s::text[]) WITH ORDINALITY AS u(i, o)"
        " LEFT JOIN stripe_events e ON e.id = i ORDER BY o",
        (list(ids),),
    )


def events_by_id(conn: Connection, ids: Sequence[str]) -> list[Row]:
    return _all(
        conn,
        "SELECT id, type, status, attempts, created, ordering_key, process_seq"
        " FROM stripe_events WHERE id = ANY(%s) ORDER BY process_seq NULLS LAST, id",
        (list(ids),),
    )


def table_columns(conn: Connection, table: str) -> list[str]:
    rows = _all(
        conn,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return [r["column_name"] for r in rows]


def mirror_rows(
    conn: Connection, table: str, key: str, values: Sequence[str], order: Sequence[str]
) -> list[Row]:
    """Rows of a mirror table (names checked by the caller against the catalog)."""
    query = sql.SQL("SELECT * FROM {} WHERE {} = ANY(%s) ORDER BY {}").format(
        sql.Identifier(table),
        sql.Identifier(key),
        sql.SQL(", ").join(sql.Identifier(c) for c in order),
    )
    with translated():
        return list(conn.execute(query, (list(values),)).fetchall())
