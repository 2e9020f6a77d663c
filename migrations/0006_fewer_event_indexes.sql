-- Every stored event paid four index entries at its INSERT, and three more when a worker
-- finished it (a status change is not a HOT update). Indexes now follow what the hot paths read:
--   * the primary key: intake's ON CONFLICT, every look-up by id;
--   * stripe_events_pending_by_key: a key's pending events in creation order (workers);
--   * stripe_events_pending_created: the pending set in creation order (the sweeper's oldest
--     stranded events, the backlog gauge); like the one above, a finished event leaves it, so
--     finishing an event writes one index entry (the primary key's) instead of three;
--   * stripe_events_dead: dead events (the dead count), empty in the normal case.
-- The (status, created) and (type, created) indexes only served operator listings by status or
-- type; those now read the table, whose size `stripe-ingest purge` bounds.
DROP INDEX IF EXISTS stripe_events_status_created;
DROP INDEX IF EXISTS stripe_events_type_created;
CREATE INDEX IF NOT EXISTS stripe_events_pending_created
    ON stripe_events (created, received_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS stripe_events_dead ON stripe_events (created) WHERE status = 'dead';
