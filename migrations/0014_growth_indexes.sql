-- What keeps the operator's reads costing what they ask for, not what stripe_events stores
-- (bench/growth.py measures them at 10M rows). Every index on stripe_events costs each intake
-- INSERT an entry, and each finish too (a status change is not a HOT update), so only two cover
-- every row; the third holds finished rows only and costs intake nothing.
--   * stripe_events_key_created: a customer's history, newest first (`events list --customer`,
--     `customers show`, the console's customer page): one look-up per key (the customer and its
--     charges, see stripe_ingest/cli/store/events.py). The workers keep their partial
--     stripe_events_pending_by_key, which holds only what is pending.
--   * stripe_events_created: the newest events (`events list`, the console's events page) and
--     the capped count beside them, read backwards from the newest.
--   * stripe_events_processed_at: what finished in the last minutes (`stats` throughput, the
--     unknown API versions of the window, the console's recent lag).
-- refunds_customer: a customer's refunds (its history and its page); the mirror's other tables
-- have theirs since 0003.
CREATE INDEX IF NOT EXISTS stripe_events_key_created
    ON stripe_events (ordering_key, created, received_at, id);
CREATE INDEX IF NOT EXISTS stripe_events_created ON stripe_events (created, received_at, id);
CREATE INDEX IF NOT EXISTS stripe_events_processed_at
    ON stripe_events (processed_at) WHERE processed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS refunds_customer ON refunds (customer_id);
-- Built in the migration's transaction, these block intake while they build: on a large table,
-- build them first with CREATE INDEX CONCURRENTLY under the same names (docs/howto/large-events-table.md);
-- IF NOT EXISTS then leaves them alone.
