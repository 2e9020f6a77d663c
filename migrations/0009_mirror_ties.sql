-- Same-second order (worker/mirror/ties.py): each mirror row keeps, next to the `created` of
-- the snapshot it was written from, that snapshot's rank in Stripe's order within the second.
-- The upserts compare (source_event_created, source_rank). Rows written before this migration
-- have the empty rank, which any same-second snapshot outranks.
ALTER TABLE customers ADD COLUMN source_rank bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE subscriptions ADD COLUMN source_rank bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE invoices ADD COLUMN source_rank bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE charges ADD COLUMN source_rank bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE disputes ADD COLUMN source_rank bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE refunds ADD COLUMN source_rank bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE checkout_sessions ADD COLUMN source_rank bigint[] NOT NULL DEFAULT '{}';

-- A notification whose customer comes from a charge the mirror has not seen yet (a dispute
-- processed before its charge): the charge's id. Writing the charge fills the customer in and
-- clears this; until then delivery holds the notification back (for at most LINK_WAIT).
ALTER TABLE notifications ADD COLUMN awaits_charge text;
CREATE INDEX notifications_awaiting ON notifications (awaits_charge)
    WHERE awaits_charge IS NOT NULL;
