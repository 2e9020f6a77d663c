-- Least privilege for stripe-ingest's processes. Run it as the database's owner (the role that
-- runs `stripe-ingest migrate`), in each database, after migrating; it is idempotent, so run
-- it again after every upgrade (new tables get their grants). The roles cannot log in: make
-- login roles that are members of them, one per process kind, for example
--
--   CREATE ROLE ingest_web    LOGIN PASSWORD '...' IN ROLE stripe_ingest_web;
--   CREATE ROLE ingest_worker LOGIN PASSWORD '...' IN ROLE stripe_ingest_worker;
--
-- and give `web` the first in its DATABASE_URL, `worker` and `sweeper` the second. Migrations
-- and the operator CLI keep the owner's role.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stripe_ingest_web') THEN
        CREATE ROLE stripe_ingest_web NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stripe_ingest_worker') THEN
        CREATE ROLE stripe_ingest_worker NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO stripe_ingest_web, stripe_ingest_worker;

-- The receiver only inserts events (ON CONFLICT DO NOTHING ... RETURNING id) and reads them.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM stripe_ingest_web;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM stripe_ingest_web;
GRANT SELECT, INSERT ON stripe_events TO stripe_ingest_web;

-- Workers and the sweeper read and write the events, their attempts and dead letters, and the
-- billing mirror; they never change the schema.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM stripe_ingest_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO stripe_ingest_worker;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM stripe_ingest_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO stripe_ingest_worker;
