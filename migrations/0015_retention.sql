-- Retention (`stripe-ingest purge`) without fighting intake.
--
-- This migration first built a second index of finished events for purge's batches
-- (stripe_events_finished, with expression statistics). stripe_events_processed_at (0014) serves
-- purge as well at one index entry less per finish: 0018 drops it where it was built.

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
