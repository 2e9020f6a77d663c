"""Every statement the workers and the sweeper run (the mirror keeps its own)."""

from __future__ import annotations

# Held until the transaction ends: one holder per ordering key across all processes and hosts.
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(%s) AS locked"

EVENT_HEAD = "SELECT ordering_key, status FROM stripe_events WHERE id = %s"

# The earliest pending event of a key, in creation order; `wait` > 0 while it waits for a retry;
# `more`: the key has another pending event (worth keeping the transaction open for).
NEXT_PENDING = """
SELECT id, type, created, livemode, api_version, account, ordering_key, received_at, attempts,
       GREATEST(0, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp()))::float8 AS wait,
       EXISTS (SELECT 1 FROM stripe_events o
               WHERE o.ordering_key = %(key)s AND o.status = 'pending' AND o.id <> e.id) AS more,
       payload
FROM stripe_events e
WHERE ordering_key = %(key)s AND status = 'pending'
  -- Pipelined after TRY_LOCK: scan (and row-lock) nothing unless we hold the key. Re-entrant.
  AND (SELECT pg_try_advisory_xact_lock(%(lock)s))
ORDER BY created, received_at, id
LIMIT 1
FOR UPDATE
"""

# The same without the payload or a row lock: is anything runnable left for this key?
PEEK_PENDING = """
SELECT id, GREATEST(0, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp()))::float8 AS wait
FROM stripe_events
WHERE ordering_key = %s AND status = 'pending'
ORDER BY created, received_at, id
LIMIT 1
"""

FINISH = """
WITH done AS (
    UPDATE stripe_events
    SET status = %(status)s, attempts = attempts + 1, processed_at = clock_timestamp(),
        process_seq = nextval('process_seq'), next_attempt_at = NULL
    WHERE id = %(id)s
    RETURNING id, attempts, processed_at
), logged AS (
    INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, worker)
    SELECT id, attempts, %(started)s, processed_at, %(status)s, %(worker)s FROM done
    RETURNING finished_at
)
SELECT finished_at FROM logged
"""

# The retry's message is due at next_attempt_at; the sweeper's lease counts from then.
RETRY_LATER = """
WITH failed AS (
    UPDATE stripe_events
    SET attempts = attempts + 1, last_error = %(error)s,
        next_attempt_at = clock_timestamp() + make_interval(secs => %(delay_s)s),
        enqueued_at = clock_timestamp() + make_interval(secs => %(delay_s)s)
    WHERE id = %(id)s
    RETURNING id, attempts
)
INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, error, worker)
SELECT id, attempts, %(started)s, clock_timestamp(), 'failed', %(error)s, %(worker)s FROM failed
"""

GIVE_UP = """
WITH dead AS (
    UPDATE stripe_events
    SET status = 'dead', attempts = attempts + 1, last_error = %(error)s,
        process_seq = nextval('process_seq'), next_attempt_at = NULL
    WHERE id = %(id)s
    RETURNING id, attempts
), letter AS (
    INSERT INTO dead_letters (event_id, dead_at, attempts, error, traceback)
    SELECT id, clock_timestamp(), attempts, %(error)s, %(traceback)s FROM dead
    ON CONFLICT (event_id) DO UPDATE
    SET dead_at = EXCLUDED.dead_at, attempts = EXCLUDED.attempts, error = EXCLUDED.error,
        traceback = EXCLUDED.traceback, replayed_at = NULL
)
INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, error, worker)
SELECT id, attempts, %(started)s, clock_timestamp(), 'dead', %(error)s, %(worker)s FROM dead
"""

# Pending events whose message may be lost: due, and not handed to the broker within the lease.
# SKIP LOCKED lets several sweepers run; rows a worker holds are being processed anyway.
CLAIM_STRANDED = """
WITH stranded AS (
    SELECT id FROM stripe_events
    WHERE status = 'pending'
      AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp())
      AND COALESCE(enqueued_at, received_at)
          < clock_timestamp() - make_interval(secs => %(lease_s)s)
    ORDER BY created, received_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE stripe_events e SET enqueued_at = clock_timestamp()
FROM stranded WHERE e.id = stranded.id
RETURNING e.id, e.ordering_key, e.created, e.received_at
"""

BACKLOG = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp()
                - min(received_at) FILTER (WHERE status = 'pending')), 0)::float8
           AS oldest_pending_s
FROM stripe_events
WHERE status IN ('pending', 'dead')
"""
