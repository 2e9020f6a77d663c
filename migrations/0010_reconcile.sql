-- One row per `stripe-ingest reconcile` run: who ran it, when, what it compared and what it
-- found. Rows a `--fix` run writes carry `source_event_id = 'reconcile:<id>'` of their run.
CREATE TABLE reconcile_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    requested_by text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    since        timestamptz,
    livemode     boolean NOT NULL,
    fix          boolean NOT NULL DEFAULT false,
    outcome      text NOT NULL DEFAULT 'running'
                 CHECK (outcome IN ('running', 'clean', 'drift', 'fixed', 'failed')),
    -- Per table: listed, missing, stale, status, not_at_stripe, fixed.
    counts       jsonb NOT NULL DEFAULT '{}'::jsonb,
    drifted      integer NOT NULL DEFAULT 0,
    fixed        integer NOT NULL DEFAULT 0,
    fixed_ids    text[] NOT NULL DEFAULT '{}',
    error        text
);
CREATE INDEX reconcile_runs_started ON reconcile_runs (started_at);
