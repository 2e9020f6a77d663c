-- `backfill` fetches its window in time segments, concurrently. Each segment is the events
-- created in [gte, lt) (lt null: no upper bound), read newest first; its `cursor` (the
-- starting_after of its next page), `fetched` and `done` commit with each page it stages, so an
-- interrupted run resumes every unfinished segment from its last page and skips finished ones.
-- Segment 0 is the newest. A run interrupted before this migration gets one segment, [since,
-- no bound), carrying on from the run's own cursor.
CREATE TABLE IF NOT EXISTS backfill_segments (
    run_id   bigint NOT NULL REFERENCES backfill_runs (id) ON DELETE CASCADE,
    segment  integer NOT NULL,
    gte      bigint NOT NULL,
    lt       bigint,
    cursor   text,
    fetched  integer NOT NULL DEFAULT 0,
    pages    integer NOT NULL DEFAULT 0,
    done     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, segment)
);

-- A staged event's place is (segment, position): newest first across the whole window, as
-- segments do not overlap. Rows staged before this migration are segment 0's.
ALTER TABLE backfill_events ADD COLUMN IF NOT EXISTS segment integer NOT NULL DEFAULT 0;
ALTER TABLE backfill_events DROP CONSTRAINT IF EXISTS backfill_events_pkey;
ALTER TABLE backfill_events ADD PRIMARY KEY (run_id, segment, position);
