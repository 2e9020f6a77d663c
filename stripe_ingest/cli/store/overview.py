"""Queries of the console's overview beyond `stats`: failures by hour and the recent lag."""

from __future__ import annotations

from typing import LiteralString

from stripe_ingest.cli.store.base import Connection, Row, _all, _one

# One row per hour of the window, the current one last, zeros included.
_FAILURES: LiteralString = """
SELECT h.hour,
       count(a.id) FILTER (WHERE a.outcome = 'failed') AS failed,
       count(a.id) FILTER (WHERE a.outcome = 'dead') AS dead
FROM generate_series(date_trunc('hour', now()) - make_interval(hours => %(hours)s - 1),
                     date_trunc('hour', now()), interval '1 hour') AS h(hour)
LEFT JOIN event_attempts a
       ON a.outcome IN ('failed', 'dead')
      AND a.finished_at >= h.hour AND a.finished_at < h.hour + interval '1 hour'
GROUP BY h.hour ORDER BY h.hour
"""


def failures_by_hour(conn: Connection, hours: int) -> list[Row]:
    """Failed and dead-lettering attempts in each of the last `hours` hours."""
    return _all(conn, _FAILURES, {"hours": hours})


def recent_lag(conn: Connection, minutes: int) -> Row:
    """Of events finished in the last `minutes`: median and largest time from their latest
    enqueue (receipt, retry or replay) to finishing, in seconds (null when none finished)."""
    row = _one(
        conn,
        "SELECT count(*) AS finished,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY l.s) AS p50_seconds,"
        " max(l.s) AS max_seconds FROM ("
        " SELECT extract(epoch FROM processed_at"
        " - greatest(received_at, coalesce(enqueued_at, received_at)))::float8 AS s"
        " FROM stripe_events WHERE status IN ('processed', 'ignored')"
        " AND processed_at >= now() - make_interval(mins => %s)) l",
        (minutes,),
    )
    assert row is not None
    return row
