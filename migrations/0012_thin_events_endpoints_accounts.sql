-- Stripe's newer deliveries. Thin events (`"object": "v2.core.event"`) are stored beside
-- snapshot events, with the named endpoint each event came in on and, for a thin event, the id
-- of its snapshot twin; every mirror row keeps the Connect account its event came from.
ALTER TABLE stripe_events
    ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'snapshot'
        CHECK (kind IN ('snapshot', 'thin')),
    ADD COLUMN IF NOT EXISTS endpoint text,
    ADD COLUMN IF NOT EXISTS snapshot_event text;

-- A thin event and its snapshot twin find each other by the snapshot's id (rare: partial).
CREATE INDEX IF NOT EXISTS stripe_events_snapshot_event
    ON stripe_events (snapshot_event) WHERE snapshot_event IS NOT NULL;

ALTER TABLE customers ADD COLUMN IF NOT EXISTS account_id text;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS account_id text;
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS account_id text;
ALTER TABLE charges ADD COLUMN IF NOT EXISTS account_id text;
ALTER TABLE disputes ADD COLUMN IF NOT EXISTS account_id text;
ALTER TABLE refunds ADD COLUMN IF NOT EXISTS account_id text;
ALTER TABLE checkout_sessions ADD COLUMN IF NOT EXISTS account_id text;
