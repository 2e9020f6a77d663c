-- Operator CLI: an audit of replays, and the resumable state of backfills.

-- One row per `stripe-ingest replay` run: who asked, what for, and how far it got.
CREATE TABLE replay_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requested_by text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    mode        text NOT NULL CHECK (mode IN ('ids', 'dead')),
    filter      jsonb NOT NULL DEFAULT '{}'::jsonb,
    forced      boolean NOT NULL DEFAULT false,
    matched     integer NOT NULL DEFAULT 0,
    replayed    integer NOT NULL DEFAULT 0,
    event_ids   text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX replay_audit_started ON replay_audit (started_at);

-- A `stripe-ingest backfill` run. Stripe lists events newest first, so a run first fetches
-- every page into backfill_events (phase 'fetching', `cursor` = the starting_after of the next
-- page), then stores them oldest first through the intake's insert (phase 'storing'). An
-- interrupted run is resumed by the next backfill with the same types and delivery filter.
CREATE TABLE backfill_runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requested_by      text NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    since             timestamptz NOT NULL,
    types             text[] NOT NULL DEFAULT '{}',
    undelivered_only  boolean NOT NULL DEFAULT false,
    phase             text NOT NULL DEFAULT 'fetching'
                      CHECK (phase IN ('fetching', 'storing', 'done', 'abandoned')),
    cursor            text,
    fetched           integer NOT NULL DEFAULT 0,
    new_events        integer NOT NULL DEFAULT 0,
    duplicates        integer NOT NULL DEFAULT 0
);

-- Fetched, not yet stored; `position` is fetch order (0 = newest).
CREATE TABLE backfill_events (
    run_id   bigint NOT NULL REFERENCES backfill_runs (id) ON DELETE CASCADE,
    position integer NOT NULL,
    payload  text NOT NULL,
    PRIMARY KEY (run_id, position)
);
