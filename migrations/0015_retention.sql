-- Retention (`stripe-ingest purge`) without fighting intake.
--
-- The finished events in the order purge deletes them (oldest first). Partial: intake's rows are
-- pending, so an intake INSERT adds no entry here; a row enters once, when a worker finishes it
-- (that UPDATE is not HOT anyway: `status` is in the pending indexes' predicates). Without it
-- every purge batch scanned the table, past the dead rows of the batches before it. IF NOT
-- EXISTS: on a large table, build it beforehand with CREATE INDEX CONCURRENTLY (same definition;
-- see docs/howto/retention.md), since this migration's build holds off writes while it runs.
CREATE INDEX IF NOT EXISTS stripe_events_finished
    ON stripe_events ((coalesce(processed_at, received_at)))
    WHERE status IN ('processed', 'ignored');
-- The planner takes no statistics from a partial index's expression: without these it guesses
-- that a purge batch's range matches 0.5% of the table and reads the whole range (a bitmap scan
-- and a sort) instead of the index's first rows. Expression statistics exist from PostgreSQL 14.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE 'CREATE STATISTICS IF NOT EXISTS stripe_events_finished_at'
             || ' ON (coalesce(processed_at, received_at)) FROM stripe_events';
    END IF;
END
$$;

-- Every event leaves one dead row version when a worker finishes it, and a purge leaves one per
-- event deleted. The default (vacuum once 20% of the table is dead) lets a large table carry
-- that much bloat and makes the vacuum after a big purge one long pass; 2% (plus a floor of
-- 10,000 rows) vacuums little and often, so freed space is reused by intake instead of growing
-- the file. Inserts trigger a vacuum at 5% too, keeping the visibility map current for the
-- index-only counts (stats, purge's count). event_attempts gets one row per attempt and loses
-- them with their events: the same.
ALTER TABLE stripe_events SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE event_attempts SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
