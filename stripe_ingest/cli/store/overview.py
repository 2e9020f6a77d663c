"""Queries of what finished lately (`stats` throughput, the unknown API versions, the console's
lag) and the console's failures by hour. Each costs the window's minutes or a fixed sample, not
how many events finished in it: at 1,000 events/s five minutes hold 300,000 finishes."""

from __future__ import annotations

from typing import LiteralString

from stripe_ingest.cli.store.base import Connection, Row, _all, _one

# The latest finishes looked at for the lag and the API versions being applied.
SAMPLE = 1000

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

# Every finish (processed, ignored or dead) takes process_seq's next value, so the finishes
# between two instants are the difference of the first values finished after each: one probe of
# stripe_events_processed_at per minute of the window. Concurrent rounds interleave their values
# by at most a round's events at a boundary; a finish that rolled back used a value too.
_THROUGHPUT: LiteralString = """
WITH b AS (
    SELECT greatest(m, now() - make_interval(mins => %(minutes)s)) AS at
    FROM generate_series(date_trunc('minute', now() - make_interval(mins => %(minutes)s)),
                         now(), interval '1 minute') AS m
    WHERE m < now()
    UNION ALL SELECT now()
), s AS (
    SELECT b.at, coalesce(
        (SELECT e.process_seq FROM stripe_events e
         WHERE e.processed_at >= b.at ORDER BY e.processed_at LIMIT 1),
        (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM process_seq)
    ) AS seq
    FROM b
)
SELECT minute, greatest(n, 0) AS n FROM (
    SELECT date_trunc('minute', at) AS minute, lead(seq) OVER (ORDER BY at) - seq AS n FROM s
) t WHERE n IS NOT NULL ORDER BY minute
"""

# The latest SAMPLE finishes, then those in the window: read backwards along
# stripe_events_processed_at whatever the planner believes the window holds (its statistics lag
# behind a burst; believing it small, it would fetch the whole window and sort it).
_LATEST: LiteralString = (
    " FROM (SELECT status, api_version, received_at, enqueued_at, processed_at"
    " FROM stripe_events WHERE processed_at IS NOT NULL"
    " ORDER BY processed_at DESC LIMIT %(sample)s) f"
    " WHERE processed_at >= now() - make_interval(mins => %(minutes)s)"
)


def failures_by_hour(conn: Connection, hours: int) -> list[Row]:
    """Failed and dead-lettering attempts in each of the last `hours` hours."""
    return _all(conn, _FAILURES, {"hours": hours})


def finished_by_minute(conn: Connection, minutes: int) -> list[Row]:
    """Events finished in each minute of the last `minutes` (`minute`, `n`), the partial first
    and current minutes included, zeros too."""
    return _all(conn, _THROUGHPUT, {"minutes": minutes})


def recent_versions(conn: Connection, minutes: int) -> list[Row]:
    """The API versions of what the workers apply now (`api_version`, `n`): pending and dead
    events (their partial indexes), and the latest SAMPLE finished in the window."""
    return _all(
        conn,
        "SELECT api_version, count(*) AS n FROM ("
        " SELECT api_version FROM stripe_events WHERE status = 'pending'"
        " UNION ALL SELECT api_version FROM stripe_events WHERE status = 'dead'"
        " UNION ALL (SELECT api_version" + _LATEST + ")) v"
        " WHERE api_version IS NOT NULL GROUP BY api_version ORDER BY api_version",
        {"minutes": minutes, "sample": SAMPLE},
    )


def recent_lag(conn: Connection, minutes: int) -> Row:
    """Of the latest SAMPLE events processed or ignored in the last `minutes` (`sampled` of
    them): median and largest time from their latest enqueue (receipt, retry or replay) to
    finishing, in seconds (null when none finished)."""
    row = _one(
        conn,
        "SELECT count(*) AS sampled,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY l.s) AS p50_seconds,"
        " max(l.s) AS max_seconds FROM ("
        " SELECT extract(epoch FROM processed_at"
        " - greatest(received_at, coalesce(enqueued_at, received_at)))::float8 AS s, status"
        + _LATEST
        + ") l WHERE l.status IN ('processed', 'ignored')",
        {"minutes": minutes, "sample": SAMPLE},
    )
    assert row is not None
    return row
