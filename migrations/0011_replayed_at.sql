-- When a replay last put the event back to pending (null: never replayed). A pending event's
-- age, the backlog gauges and the workers' lag count from its latest enqueue, the later of its
-- receipt and its latest replay, so a bulk replay of old events does not look days old; the age
-- since receipt is kept beside it. Nullable without a default: adding it rewrites nothing.
ALTER TABLE stripe_events ADD COLUMN IF NOT EXISTS replayed_at timestamptz;
