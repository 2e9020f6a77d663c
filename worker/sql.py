"""Every statement the workers and the sweeper run (the mirror keeps its own)."""

from __future__ import annotations

EVENT_HEAD = "SELECT ordering_key, status FROM stripe_events WHERE id = %s"

# Many keys at once (a message naming many events): every key's try-lock, taken in the order
# given, and each locked key's earliest pending events in creation order (at most `per_key`),
# row-locked; a key that is busy or has nothing pending gives one row with a null id.
LOCK_KEYS_NEXT = """
SELECT l.key, l.locked, n.*
FROM (
    SELECT k AS key, pg_try_advisory_xact_lock(lk) AS locked
    FROM unnest(%(keys)s::text[], %(locks)s::int8[]) WITH ORDINALITY AS u(k, lk, o)
    ORDER BY o
) l
LEFT JOIN LATERAL (
    SELECT id, type, created, livemode, api_version, account, ordering_key, received_at,
           COALESCE(replayed_at, received_at) AS enqueued, attempts, kind, endpoint,
           snapshot_event,
           GREATEST(0, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp()))::float8 AS wait,
           payload
    FROM stripe_events
    WHERE l.locked AND ordering_key = l.key AND status = 'pending'
    ORDER BY created, received_at, id
    LIMIT %(per_key)s
    FOR UPDATE
) n ON true
"""

# Finish the events of a round in the order they ran: `process_seq` follows that order (the
# ids are numbered as unnest gives them, before the join).
FINISH_MANY = """
WITH ran AS MATERIALIZED (
    SELECT r.id, r.status, r.started, nextval('process_seq') AS seq
    FROM unnest(%(ids)s::text[], %(statuses)s::text[], %(started)s::timestamptz[])
        WITH ORDINALITY AS r(id, status, started, o)
), done AS (
    UPDATE stripe_events e
    SET status = ran.status, attempts = e.attempts + 1, processed_at = clock_timestamp(),
        process_seq = ran.seq, next_attempt_at = NULL
    FROM ran
    WHERE e.id = ran.id
    RETURNING e.id, e.attempts, e.processed_at, ran.status, ran.started
)
INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, worker)
SELECT id, attempts, started, processed_at, status, %(worker)s FROM done
RETURNING event_id, finished_at
"""

# Each key's earliest pending event and how long it still waits (0: runnable now).
PEEK_KEYS = """
SELECT DISTINCT ON (ordering_key) ordering_key, id,
       GREATEST(0, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp()))::float8 AS wait
FROM stripe_events
WHERE ordering_key = ANY(%(keys)s::text[]) AND status = 'pending'
ORDER BY ordering_key, created, received_at, id
"""

# A failed attempt is written under the key's lock (taken again: the round that failed was
# rolled back) and only if nobody counted it meanwhile (`attempts` as the round read it).
_FAILED_UNDER_LOCK = """
WITH held AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(%(lock)s) AS locked),
failed AS (
    UPDATE stripe_events
    SET attempts = attempts + %(add)s, last_error = %(error)s,
"""
_FAILED_WHERE = """
    WHERE id = %(id)s AND status = 'pending' AND attempts = %(attempts)s
      AND (SELECT locked FROM held)
    RETURNING id, attempts
), ended AS (
    DELETE FROM event_attempts
    WHERE %(claimed)s AND event_id = %(id)s AND outcome = 'running'
      AND EXISTS (SELECT 1 FROM failed)
)
"""

# The retry's message is due at next_attempt_at; the sweeper's lease counts from then.
RETRY_LATER = (
    _FAILED_UNDER_LOCK
    + """        next_attempt_at = clock_timestamp() + make_interval(secs => %(delay_s)s),
        enqueued_at = clock_timestamp() + make_interval(secs => %(delay_s)s)"""
    + _FAILED_WHERE
    + """INSERT INTO event_attempts
    (event_id, attempt, started_at, finished_at, outcome, error, worker)
SELECT id, attempts, %(started)s, clock_timestamp(), 'failed', %(error)s, %(worker)s FROM failed
RETURNING event_id
"""
)

GIVE_UP = (
    _FAILED_UNDER_LOCK
    + """        status = 'dead', process_seq = nextval('process_seq'), next_attempt_at = NULL"""
    + _FAILED_WHERE
    + """, letter AS (
    INSERT INTO dead_letters (event_id, dead_at, attempts, error, traceback)
    SELECT id, clock_timestamp(), attempts, %(error)s, %(traceback)s FROM failed
    ON CONFLICT (event_id) DO UPDATE
    SET dead_at = EXCLUDED.dead_at, attempts = EXCLUDED.attempts, error = EXCLUDED.error,
        traceback = EXCLUDED.traceback, replayed_at = NULL,
        resolved_at = NULL, resolved_by = NULL, resolution = NULL
)
INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, error, worker)
SELECT id, attempts, %(started)s, clock_timestamp(), 'dead', %(error)s, %(worker)s FROM failed
RETURNING event_id
"""
)

# A suspect event (re-sent by the sweeper: its worker may have died in it) is claimed before its
# handlers run: under the key's lock, its attempt is counted and committed with a 'running'
# attempt row. Only the key's earliest pending event, when it is due.
CLAIM_HEAD = """
WITH held AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(%(lock)s) AS locked),
head AS (
    SELECT id, type, created, livemode, api_version, account, ordering_key, received_at,
           COALESCE(replayed_at, received_at) AS enqueued, attempts, last_error, kind, endpoint,
           snapshot_event, payload
    FROM stripe_events
    WHERE (SELECT locked FROM held) AND ordering_key = %(key)s AND status = 'pending'
    ORDER BY created, received_at, id
    LIMIT 1
    FOR UPDATE
)
SELECT (SELECT locked FROM held) AS locked, head.*
FROM (SELECT 1) AS one LEFT JOIN head ON true
"""

# While claimed, `next_attempt_at` is 9999-12-31: other messages see it wait (and its key with
# it); only a claim runs it. If its worker dies, the sweeper re-sends it after the lease.

COUNT_RUNNING = """
WITH claimed AS (
    UPDATE stripe_events
    SET attempts = attempts + 1, next_attempt_at = '9999-12-31 00:00:00+00',
        enqueued_at = clock_timestamp()
    WHERE id = %(id)s
      AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp()
           OR next_attempt_at = '9999-12-31 00:00:00+00')
    RETURNING id, attempts
)
INSERT INTO event_attempts (event_id, attempt, started_at, outcome, worker)
SELECT id, attempts, clock_timestamp(), 'running', %(worker)s FROM claimed
RETURNING attempt
"""

# Finish a claimed event: its attempt is counted already, its 'running' row becomes the outcome.
FINISH_CLAIMED = """
WITH done AS (
    UPDATE stripe_events
    SET status = %(status)s, processed_at = clock_timestamp(),
        process_seq = nextval('process_seq'), next_attempt_at = NULL
    WHERE id = %(id)s
    RETURNING id, attempts, processed_at
)
UPDATE event_attempts a
SET finished_at = done.processed_at, outcome = %(status)s, worker = %(worker)s
FROM done
WHERE a.event_id = done.id AND a.attempt = done.attempts AND a.outcome = 'running'
RETURNING a.event_id, a.finished_at
"""

# Keys whose message may be lost: the key's earliest pending event (its head) is due and was not
# handed to the broker within the lease. Only heads: a message drains its key from the head on,
# so the events behind it need none (claiming them too would rewrite every row of a backlog, and
# the next pass would have to read past them). SKIP LOCKED lets several sweepers run; rows a
# worker holds are being processed anyway.
CLAIM_STRANDED = """
WITH stranded AS (
    SELECT id FROM stripe_events e
    WHERE status = 'pending'
      AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp()
           OR next_attempt_at = '9999-12-31 00:00:00+00')  -- a claimed suspect (see above)
      AND COALESCE(enqueued_at, received_at)
          < clock_timestamp() - make_interval(secs => %(lease_s)s)
      AND NOT EXISTS (
          SELECT 1 FROM stripe_events p
          WHERE p.ordering_key = e.ordering_key AND p.status = 'pending'
            AND (p.created, p.received_at, p.id) < (e.created, e.received_at, e.id)
      )
    ORDER BY created, received_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE stripe_events e SET enqueued_at = clock_timestamp(), sweeps = e.sweeps + 1
FROM stranded WHERE e.id = stranded.id
RETURNING e.id, e.ordering_key, e.created, e.received_at, e.sweeps
"""

# What the gauges read when Prometheus scrapes. A pending event's age counts from its latest
# enqueue (receipt or replay); the age since receipt is kept beside it. A claimed suspect's
# next_attempt_at (9999-12-31) is not a retry's wait. `dead` counts the open dead letters:
# resolved ones (migrations/0008) stay dead but no longer count.
BACKLOG = """
SELECT p.pending, p.waiting_retry,
       (SELECT count(*) FROM stripe_events e WHERE status = 'dead' AND NOT EXISTS (
            SELECT 1 FROM dead_letters d WHERE d.event_id = e.id AND d.resolved_at IS NOT NULL
       )) AS dead,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - p.oldest_enqueued), 0)::float8
           AS oldest_pending_s,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - p.oldest_received), 0)::float8
           AS oldest_pending_since_receipt_s
FROM (
    SELECT count(*) AS pending,
           count(*) FILTER (WHERE next_attempt_at > clock_timestamp()
                            AND next_attempt_at < '9999-12-31 00:00:00+00') AS waiting_retry,
           min(COALESCE(replayed_at, received_at)) AS oldest_enqueued,
           min(received_at) AS oldest_received
    FROM stripe_events WHERE status = 'pending'
) p
"""

# The notifications outbox (the mirror's table), read through its partial index of unsent rows.
OUTBOX = """
SELECT count(*) FILTER (WHERE attempts < %(max_attempts)s) AS unsent,
       count(*) FILTER (WHERE attempts < %(max_attempts)s AND last_error IS NOT NULL)
           AS retrying,
       count(*) FILTER (WHERE attempts >= %(max_attempts)s) AS failed,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp()
                - min(created_at) FILTER (WHERE attempts < %(max_attempts)s)), 0)::float8
           AS oldest_unsent_s
FROM notifications WHERE sent_at IS NULL
"""
