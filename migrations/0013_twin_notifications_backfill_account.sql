-- A thin event and its snapshot twin share their notifications: each notification counts for
-- `dedupe_key`, the snapshot twin's id for a thin event that names one (`snapshot_event`), else
-- the event's own id, and there is one per (dedupe_key, kind) whichever twin writes it first.
-- Rows written before this migration (or by an older worker) count for their event_id.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS dedupe_key text;
CREATE UNIQUE INDEX IF NOT EXISTS notifications_dedupe
    ON notifications ((coalesce(dedupe_key, event_id)), kind);

-- `backfill --account acct_...` reads a connected account's events; a run resumes only with the
-- same account (null: the platform's own events).
ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS account text;
