-- The billing mirror: Stripe objects as of the newest event applied, kept by the worker.
--
-- Every mirror row keeps `source_event_created` (the `created` of the event, or the time of the
-- Stripe API read, it was last written from) and `source_event_id`. The upserts in
-- worker/mirror/queries.py only overwrite a row when the incoming snapshot is not older.

CREATE TABLE customers (
    id                   text PRIMARY KEY,
    email                text,
    name                 text,
    currency             text,
    delinquent           boolean,
    deleted              boolean NOT NULL DEFAULT false,
    deleted_at           timestamptz,
    livemode             boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    created              timestamptz,
    source_event_created timestamptz NOT NULL,
    source_event_id      text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    id                   text PRIMARY KEY,
    customer_id          text,
    status               text NOT NULL,
    price_id             text,
    product_id           text,
    quantity             integer,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    cancel_at            timestamptz,
    canceled_at          timestamptz,
    ended_at             timestamptz,
    trial_start          timestamptz,
    trial_end            timestamptz,
    latest_invoice_id    text,
    livemode             boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    created              timestamptz,
    source_event_created timestamptz NOT NULL,
    source_event_id      text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

CREATE TABLE invoices (
    id                   text PRIMARY KEY,
    customer_id          text,
    subscription_id      text,
    status               text,
    billing_reason       text,
    currency             text,
    amount_due           bigint,
    amount_paid          bigint,
    amount_remaining     bigint,
    total                bigint,
    hosted_invoice_url   text,
    attempt_count        integer,
    next_payment_attempt timestamptz,
    paid_at              timestamptz,
    charge_id            text,
    payment_intent_id    text,
    period_start         timestamptz,
    period_end           timestamptz,
    livemode             boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    created              timestamptz,
    -- Not part of Stripe's snapshot: the earliest `invoice.payment_failed` seen for this invoice
    -- and the grace end computed from it (GRACE_PERIOD_DAYS at the time it was recorded).
    -- Order-independent (the earliest wins); ignored once the invoice is no longer `open`.
    first_failed_at      timestamptz,
    grace_until          timestamptz,
    source_event_created timestamptz NOT NULL,
    source_event_id      text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_customer ON invoices (customer_id);
CREATE INDEX invoices_subscription ON invoices (subscription_id);

CREATE TABLE charges (
    id                   text PRIMARY KEY,
    customer_id          text,
    payment_intent_id    text,
    invoice_id           text,
    amount               bigint,
    amount_captured      bigint,
    amount_refunded      bigint NOT NULL DEFAULT 0,
    currency             text,
    captured             boolean NOT NULL DEFAULT false,
    paid                 boolean NOT NULL DEFAULT false,
    refunded             boolean NOT NULL DEFAULT false,
    disputed             boolean NOT NULL DEFAULT false,
    status               text,
    failure_code         text,
    failure_message      text,
    livemode             boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    created              timestamptz,
    source_event_created timestamptz NOT NULL,
    source_event_id      text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charges_customer ON charges (customer_id, created);

CREATE TABLE disputes (
    id                   text PRIMARY KEY,
    charge_id            text,
    -- A dispute names no customer: taken from the charge when either row is written.
    customer_id          text,
    payment_intent_id    text,
    amount               bigint,
    currency             text,
    reason               text,
    status               text,
    livemode             boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    created              timestamptz,
    source_event_created timestamptz NOT NULL,
    source_event_id      text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disputes_charge ON disputes (charge_id);
CREATE INDEX disputes_customer ON disputes (customer_id);

CREATE TABLE refunds (
    id                   text PRIMARY KEY,
    charge_id            text,
    customer_id          text,
    payment_intent_id    text,
    amount               bigint,
    currency             text,
    reason               text,
    status               text,
    livemode             boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    created              timestamptz,
    source_event_created timestamptz NOT NULL,
    source_event_id      text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_charge ON refunds (charge_id);

-- Completed Checkout Sessions: how an application finds its user (client_reference_id or
-- metadata) from a Stripe customer and subscription, and back.
CREATE TABLE checkout_sessions (
    id                   text PRIMARY KEY,
    client_reference_id  text,
    customer_id          text,
    subscription_id      text,
    invoice_id           text,
    payment_intent_id    text,
    mode                 text,
    status               text,
    payment_status       text,
    amount_total         bigint,
    currency             text,
    livemode             boolean NOT NULL DEFAULT false,
    metadata             jsonb NOT NULL DEFAULT '{}',
    created              timestamptz,
    source_event_created timestamptz NOT NULL,
    source_event_id      text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkout_sessions_client_reference ON checkout_sessions (client_reference_id);
CREATE INDEX checkout_sessions_customer ON checkout_sessions (customer_id);
CREATE INDEX checkout_sessions_subscription ON checkout_sessions (subscription_id);

-- The outbox: written in the transaction that applies the event, delivered afterwards.
-- UNIQUE (event_id, kind): a duplicate or replayed event never makes a second one.
CREATE TABLE notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    text NOT NULL,
    kind        text NOT NULL,
    customer_id text,
    payload     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Last time a delivery message was handed to the broker (after commit, or by the sweeper).
    enqueued_at timestamptz,
    -- Set when a delivery claims the row (before sending); cleared again if sending fails.
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    UNIQUE (event_id, kind)
);
CREATE INDEX notifications_unsent ON notifications (created_at) WHERE sent_at IS NULL;
CREATE INDEX notifications_customer ON notifications (customer_id, created_at);

-- Access decisions as of `at`, one row per known customer. The view below is this function at
-- now(); worker.mirror.access.customer_access() calls it with any time, so both agree.
-- Rules, first match wins (see docs/reference/mirror.md, "Access decisions"):
--   1. customer deleted                                  -> no  (customer_deleted)
--   2. an open dispute on one of the customer's charges  -> no  (dispute_open)
--   3. latest successful payment lost in a dispute       -> no  (dispute_lost)
--   4. latest successful payment fully refunded          -> no  (payment_refunded)
--   5. best subscription: active / trialing -> yes; past_due -> yes until the grace end of its
--      earliest unpaid failed invoice, then no (grace_expired); any other status -> no
--   6. no subscription                                   -> no  (no_subscription)
CREATE FUNCTION customer_access_at(at timestamptz)
RETURNS TABLE (customer_id text, has_access boolean, reason text, until timestamptz)
LANGUAGE sql STABLE AS $$
    WITH known AS (
        SELECT id AS customer_id FROM customers
        UNION
        SELECT s.customer_id FROM subscriptions s WHERE s.customer_id IS NOT NULL
    ),
    graded AS (
        SELECT s.customer_id, s.id, g.granted, g.reason, g.until, g.rank
        FROM subscriptions s
        CROSS JOIN LATERAL (
            SELECT min(i.grace_until) AS grace_until
            FROM invoices i
            WHERE i.subscription_id = s.id AND i.status = 'open' AND i.grace_until IS NOT NULL
        ) f
        CROSS JOIN LATERAL (
            SELECT
                CASE
                    WHEN s.status IN ('active', 'trialing') THEN true
                    WHEN s.status = 'past_due' THEN f.grace_until IS NULL OR at < f.grace_until
                    ELSE false
                END AS granted,
                CASE
                    WHEN s.status IN ('active', 'trialing') THEN s.status
                    WHEN s.status = 'past_due'
                        AND (f.grace_until IS NULL OR at < f.grace_until) THEN 'past_due_grace'
                    WHEN s.status = 'past_due' THEN 'grace_expired'
                    ELSE s.status
                END AS reason,
                CASE
                    WHEN s.status = 'active' THEN s.current_period_end
                    WHEN s.status = 'trialing' THEN coalesce(s.trial_end, s.current_period_end)
                    WHEN s.status = 'past_due' THEN f.grace_until
                END AS until,
                CASE s.status
                    WHEN 'active' THEN 0 WHEN 'trialing' THEN 1 WHEN 'past_due' THEN 2
                    ELSE 3
                END AS rank
        ) g
        WHERE s.customer_id IS NOT NULL
    ),
    best AS (
        SELECT DISTINCT ON (customer_id) customer_id, granted, reason, until
        FROM graded
        ORDER BY customer_id, granted DESC, rank, until DESC NULLS LAST, id
    )
    SELECT
        k.customer_id,
        CASE
            WHEN coalesce(c.deleted, false) OR d.open OR p.lost OR p.refunded THEN false
            ELSE coalesce(b.granted, false)
        END AS has_access,
        CASE
            WHEN coalesce(c.deleted, false) THEN 'customer_deleted'
            WHEN d.open THEN 'dispute_open'
            WHEN p.lost THEN 'dispute_lost'
            WHEN p.refunded THEN 'payment_refunded'
            ELSE coalesce(b.reason, 'no_subscription')
        END AS reason,
        CASE
            WHEN coalesce(c.deleted, false) OR d.open OR p.lost OR p.refunded THEN NULL
            WHEN coalesce(b.granted, false) THEN b.until
        END AS until
    FROM known k
    LEFT JOIN customers c ON c.id = k.customer_id
    LEFT JOIN best b ON b.customer_id = k.customer_id
    CROSS JOIN LATERAL (
        SELECT EXISTS (
            SELECT 1 FROM disputes dp
            WHERE dp.customer_id = k.customer_id
              AND dp.status NOT IN ('won', 'lost', 'warning_closed', 'prevented')
        ) AS open
    ) d
    LEFT JOIN LATERAL (
        SELECT
            EXISTS (
                SELECT 1 FROM disputes dp WHERE dp.charge_id = ch.id AND dp.status = 'lost'
            ) AS lost,
            ch.amount > 0 AND (
                ch.refunded
                OR ch.amount_refunded >= ch.amount
                OR (
                    SELECT coalesce(sum(r.amount), 0) FROM refunds r
                    WHERE r.charge_id = ch.id AND r.status = 'succeeded'
                ) >= ch.amount
            ) AS refunded
        FROM charges ch
        WHERE ch.customer_id = k.customer_id AND ch.status = 'succeeded'
        ORDER BY ch.created DESC NULLS LAST, ch.id DESC
        LIMIT 1
    ) p ON true
$$;

CREATE VIEW customer_access AS
    SELECT customer_id, has_access, reason, until FROM customer_access_at(now());
