"""Every statement the workers and the sweeper run (the mirror keeps its own)."""

from __future__ import annotations

EVENT_HEAD = "SELECT ordering_key, status FROM stripe_events WHERE id = %s"

# The earliest pending event of a key in creation order besides `done` (the event the statement
# finishes, if any), row-locked, and only read when `l.locked`; `wait` > 0 while it waits for a
# retry; `more`: the key has yet another pending event (worth keeping the transaction open for).
_NEXT_OF_KEY = """
LEFT JOIN LATERAL (
    SELECT id, type, created, livemode, api_version, account, ordering_key, received_at,
           attempts,
           GREATEST(0, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp()))::float8 AS wait,
           EXISTS (SELECT 1 FROM stripe_events o
                   WHERE o.ordering_key = %(key)s AND o.status = 'pending' AND o.id <> e.id
                     AND o.id IS DISTINCT FROM %(done)s::text) AS more,
           payload
    FROM stripe_events e
    WHERE l.locked AND ordering_key = %(key)s AND status = 'pending'
      AND id IS DISTINCT FROM %(done)s::text
    ORDER BY created, received_at, id
    LIMIT 1
    FOR UPDATE
) n ON true
"""

# Take the key's lock, held until the transaction ends: one holder per ordering key across all
# processes and hosts (re-entrant); `locked` is false while another transaction holds it. Then
# its next event (null columns when none): nothing is scanned or row-locked without the lock.
LOCK_NEXT = (
    """
SELECT l.locked, n.*
FROM (SELECT pg_try_advisory_xact_lock(%(lock)s) AS locked) l
"""
    + _NEXT_OF_KEY
)

# The same without the payload or a row lock: is anything runnable left for this key?
PEEK_PENDING = """
SELECT id, GREATEST(0, EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp()))::float8 AS wait
FROM stripe_events
WHERE ordering_key = %s AND status = 'pending'
ORDER BY created, received_at, id
LIMIT 1
"""

_FINISH = """
WITH done AS (
    UPDATE stripe_events
    SET status = %(status)s, attempts = attempts + 1, processed_at = clock_timestamp(),
        process_seq = nextval('process_seq'), next_attempt_at = NULL
    WHERE id = %(done)s
    RETURNING id, attempts, processed_at
), logged AS (
    INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, worker)
    SELECT id, attempts, %(started)s, processed_at, %(status)s, %(worker)s FROM done
    RETURNING finished_at
)
"""

FINISH = _FINISH + "SELECT finished_at FROM logged"

# Finish an event and take the key's next one in the same statement (the key is held).
FINISH_NEXT = (
    _FINISH
    + """SELECT (SELECT finished_at FROM logged) AS finished_at, n.*
FROM (SELECT true AS locked) l
"""
    + _NEXT_OF_KEY
)

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
           attempts,
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

# Each part reads its partial index (pending, dead), not the table.
BACKLOG = """
SELECT (SELECT count(*) FROM stripe_events WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM stripe_events WHERE status = 'dead') AS dead,
       COALESCE(EXTRACT(EPOCH FROM clock_timestamp()
                - (SELECT min(received_at) FROM stripe_events WHERE status = 'pending')), 0)::float8
           AS oldest_pending_s
"""
