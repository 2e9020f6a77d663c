-- One index of finished events instead of two. stripe_events_processed_at (0014) and
-- stripe_events_finished (0015) held nearly the same rows in the same order (processed_at is set
-- by every finish), and every finish paid an entry in each. Purge now reads its batches along
-- stripe_events_processed_at (stripe_ingest/cli/store/purge.py): the dead events in it are few
-- and skipped. The planner has processed_at's own column statistics, so the expression
-- statistics that stood in for them go too.
DROP INDEX IF EXISTS stripe_events_finished;
DROP STATISTICS IF EXISTS stripe_events_finished_at;
