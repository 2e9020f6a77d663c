-- Closing a dead letter without replaying it (`dead-letters resolve`, the console): the event stays
-- `dead`, its dead_letters row says who resolved it, when and why, and it no longer counts as open
-- (stats, the stripe_events_dead gauge, listings, `replay --dead`). A replay still removes the row.
ALTER TABLE dead_letters
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolved_by text,
    ADD COLUMN resolution  text,
    ADD CONSTRAINT dead_letters_resolved_together
        CHECK ((resolved_at IS NULL) = (resolved_by IS NULL)
               AND (resolved_at IS NULL) = (resolution IS NULL));

CREATE INDEX dead_letters_resolved ON dead_letters (event_id) WHERE resolved_at IS NOT NULL;

-- Every resolution, kept after a later replay removes the dead letter (the audit of what was
-- closed by whom). No foreign key: the log outlives what it names.
CREATE TABLE dead_letter_resolutions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text NOT NULL,
    resolved_at timestamptz NOT NULL DEFAULT now(),
    resolved_by text NOT NULL,
    via         text NOT NULL CHECK (via IN ('cli', 'console')),
    resolution  text NOT NULL,
    error       text
);
CREATE INDEX dead_letter_resolutions_event ON dead_letter_resolutions (event_id, resolved_at);

-- Which tool asked for a replay: the CLI, or the console (whose `requested_by` is the name the
-- operator logged in with).
ALTER TABLE replay_audit ADD COLUMN via text NOT NULL DEFAULT 'cli' CHECK (via IN ('cli', 'console'));

-- The console's chart of recent failures reads failed and dead attempts by when they ended.
CREATE INDEX event_attempts_failures ON event_attempts (finished_at)
    WHERE outcome IN ('failed', 'dead');
