-- The inbox: one row per Stripe event id, the source of truth for all processing.
CREATE SEQUENCE process_seq;

CREATE TABLE stripe_events (
    id              text PRIMARY KEY,
    type            text NOT NULL,
    created         timestamptz NOT NULL,
    livemode        boolean NOT NULL DEFAULT false,
    api_version     text,
    account         text,
    ordering_key    text NOT NULL,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processed', 'ignored', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    processed_at    timestamptz,
    process_seq     bigint UNIQUE,
    -- Not before this time: set while an event waits for its retry backoff.
    next_attempt_at timestamptz,
    -- When a message for this event was last handed to the broker (intake, retry, sweeper).
    enqueued_at     timestamptz
);

-- The workers drain one key's pending events in creation order.
CREATE INDEX stripe_events_pending_by_key
    ON stripe_events (ordering_key, created, received_at, id)
    WHERE status = 'pending';
CREATE INDEX stripe_events_status_created ON stripe_events (status, created);
CREATE INDEX stripe_events_type_created ON stripe_events (type, created);

CREATE TABLE dead_letters (
    event_id    text PRIMARY KEY REFERENCES stripe_events (id) ON DELETE CASCADE,
    dead_at     timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL,
    error       text NOT NULL,
    traceback   text,
    replayed_at timestamptz
);

-- Every processing attempt, for operators: what ran, when, and how it ended.
-- `attempt` is stripe_events.attempts at the time; a replay starts counting again, so it is not a key.
CREATE TABLE event_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text NOT NULL REFERENCES stripe_events (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text NOT NULL CHECK (outcome IN ('processed', 'ignored', 'failed', 'dead')),
    error       text,
    worker      text
);
CREATE INDEX event_attempts_event ON event_attempts (event_id, started_at);
