"""Every statement the billing mirror runs.

Upserts are stale-protected: `ON CONFLICT ... DO UPDATE ... WHERE (t.source_event_created,
t.source_rank) <= (EXCLUDED...)`, so an older snapshot never overwrites a newer one, a same-second
one that is earlier in Stripe's order (worker/mirror/ties.py) never overwrites a later one, and an
equal one (a duplicate, a replay) is applied again. On top of that, statuses Stripe never leaves
(a canceled subscription, a paid or void invoice, a deleted customer, a closed dispute) are
sticky. Links to other objects (a customer, a subscription, a charge) are kept once known, and
filled in from whichever side arrives second. A statement returns a row only when it wrote one.
"""

from __future__ import annotations

from typing import LiteralString

UPSERT_CUSTOMER: LiteralString = """
INSERT INTO customers AS t (
    id, email, name, currency, delinquent, deleted, deleted_at, livemode, metadata, created,
    source_event_created, source_event_id, source_rank, account_id
) VALUES (
    %(id)s, %(email)s, %(name)s, %(currency)s, %(delinquent)s, %(deleted)s, %(deleted_at)s,
    %(livemode)s, %(metadata)s, %(created)s, %(source_event_created)s, %(source_event_id)s,
    %(source_rank)s,
    %(account_id)s
)
ON CONFLICT (id) DO UPDATE SET
    email = CASE WHEN EXCLUDED.deleted THEN t.email ELSE EXCLUDED.email END,
    name = CASE WHEN EXCLUDED.deleted THEN t.name ELSE EXCLUDED.name END,
    currency = coalesce(EXCLUDED.currency, t.currency),
    delinquent = coalesce(EXCLUDED.delinquent, t.delinquent),
    deleted = EXCLUDED.deleted,
    deleted_at = coalesce(t.deleted_at, EXCLUDED.deleted_at),
    livemode = EXCLUDED.livemode,
    metadata = CASE WHEN EXCLUDED.deleted THEN t.metadata ELSE EXCLUDED.metadata END,
    created = coalesce(EXCLUDED.created, t.created),
    source_event_created = EXCLUDED.source_event_created,
    source_event_id = EXCLUDED.source_event_id,
    source_rank = EXCLUDED.source_rank,
    account_id = coalesce(EXCLUDED.account_id, t.account_id),
    updated_at = now()
WHERE (t.source_event_created, t.source_rank)
      <= (EXCLUDED.source_event_created, EXCLUDED.source_rank)
  AND NOT (t.deleted AND NOT EXCLUDED.deleted)
RETURNING t.id, t.deleted
"""

UPSERT_SUBSCRIPTION: LiteralString = """
INSERT INTO subscriptions AS t (
    id, customer_id, status, price_id, product_id, quantity, current_period_start,
    current_period_end, cancel_at_period_end, cancel_at, canceled_at, ended_at, trial_start,
    trial_end, latest_invoice_id, livemode, metadata, created, source_event_created,
    source_event_id, source_rank, account_id
) VALUES (
    %(id)s, %(customer_id)s, %(status)s, %(price_id)s, %(product_id)s, %(quantity)s,
    %(current_period_start)s, %(current_period_end)s, %(cancel_at_period_end)s, %(cancel_at)s,
    %(canceled_at)s, %(ended_at)s, %(trial_start)s, %(trial_end)s, %(latest_invoice_id)s,
    %(livemode)s, %(metadata)s, %(created)s, %(source_event_created)s, %(source_event_id)s,
    %(source_rank)s,
    %(account_id)s
)
ON CONFLICT (id) DO UPDATE SET
    customer_id = coalesce(EXCLUDED.customer_id, t.customer_id),
    status = EXCLUDED.status,
    price_id = EXCLUDED.price_id,
    product_id = EXCLUDED.product_id,
    quantity = EXCLUDED.quantity,
    current_period_start = EXCLUDED.current_period_start,
    current_period_end = EXCLUDED.current_period_end,
    cancel_at_period_end = EXCLUDED.cancel_at_period_end,
    cancel_at = EXCLUDED.cancel_at,
    canceled_at = EXCLUDED.canceled_at,
    ended_at = EXCLUDED.ended_at,
    trial_start = EXCLUDED.trial_start,
    trial_end = EXCLUDED.trial_end,
    latest_invoice_id = EXCLUDED.latest_invoice_id,
    livemode = EXCLUDED.livemode,
    metadata = EXCLUDED.metadata,
    created = coalesce(EXCLUDED.created, t.created),
    source_event_created = EXCLUDED.source_event_created,
    source_event_id = EXCLUDED.source_event_id,
    source_rank = EXCLUDED.source_rank,
    account_id = coalesce(EXCLUDED.account_id, t.account_id),
    updated_at = now()
WHERE (t.source_event_created, t.source_rank)
      <= (EXCLUDED.source_event_created, EXCLUDED.source_rank)
  AND NOT (t.status IN ('canceled', 'incomplete_expired')
           AND EXCLUDED.status NOT IN ('canceled', 'incomplete_expired'))
RETURNING t.id, t.status, t.trial_end
"""

# Paid and void are final (Stripe never reopens them); same-second order comes from the rank.
UPSERT_INVOICE: LiteralString = """
INSERT INTO invoices AS t (
    id, customer_id, subscription_id, status, billing_reason, currency, amount_due, amount_paid,
    amount_remaining, total, hosted_invoice_url, attempt_count, next_payment_attempt, paid_at,
    charge_id, payment_intent_id, period_start, period_end, livemode, metadata, created,
    source_event_created, source_event_id, source_rank, account_id
) VALUES (
    %(id)s, %(customer_id)s, %(subscription_id)s, %(status)s, %(billing_reason)s, %(currency)s,
    %(amount_due)s, %(amount_paid)s, %(amount_remaining)s, %(total)s, %(hosted_invoice_url)s,
    %(attempt_count)s, %(next_payment_attempt)s, %(paid_at)s, %(charge_id)s,
    %(payment_intent_id)s, %(period_start)s, %(period_end)s, %(livemode)s, %(metadata)s,
    %(created)s, %(source_event_created)s, %(source_event_id)s, %(source_rank)s,
    %(account_id)s
)
ON CONFLICT (id) DO UPDATE SET
    customer_id = coalesce(EXCLUDED.customer_id, t.customer_id),
    subscription_id = coalesce(EXCLUDED.subscription_id, t.subscription_id),
    status = EXCLUDED.status,
    billing_reason = EXCLUDED.billing_reason,
    currency = EXCLUDED.currency,
    amount_due = EXCLUDED.amount_due,
    amount_paid = EXCLUDED.amount_paid,
    amount_remaining = EXCLUDED.amount_remaining,
    total = EXCLUDED.total,
    hosted_invoice_url = coalesce(EXCLUDED.hosted_invoice_url, t.hosted_invoice_url),
    attempt_count = EXCLUDED.attempt_count,
    next_payment_attempt = EXCLUDED.next_payment_attempt,
    paid_at = coalesce(EXCLUDED.paid_at, t.paid_at),
    charge_id = coalesce(EXCLUDED.charge_id, t.charge_id),
    payment_intent_id = coalesce(EXCLUDED.payment_intent_id, t.payment_intent_id),
    period_start = EXCLUDED.period_start,
    period_end = EXCLUDED.period_end,
    livemode = EXCLUDED.livemode,
    metadata = EXCLUDED.metadata,
    created = coalesce(EXCLUDED.created, t.created),
    source_event_created = EXCLUDED.source_event_created,
    source_event_id = EXCLUDED.source_event_id,
    source_rank = EXCLUDED.source_rank,
    account_id = coalesce(EXCLUDED.account_id, t.account_id),
    updated_at = now()
WHERE (t.source_event_created, t.source_rank)
      <= (EXCLUDED.source_event_created, EXCLUDED.source_rank)
  AND NOT (t.status IN ('paid', 'void') AND EXCLUDED.status IS DISTINCT FROM t.status)
RETURNING t.id, t.status
"""

# The earliest failed payment wins whatever the delivery order; the grace end is computed from
# it with GRACE_PERIOD_DAYS when it is recorded. `grace_before`: the grace end before this one.
RECORD_PAYMENT_FAILURE: LiteralString = """
UPDATE invoices i SET
    first_failed_at = LEAST(coalesce(i.first_failed_at, %(failed_at)s), %(failed_at)s),
    grace_until = LEAST(coalesce(i.grace_until, %(grace_until)s), %(grace_until)s)
FROM (SELECT grace_until FROM invoices WHERE id = %(id)s) before
WHERE i.id = %(id)s
RETURNING i.id, i.status, i.subscription_id, i.customer_id, i.grace_until,
          i.hosted_invoice_url, before.grace_until AS grace_before
"""

# An earlier failure recorded after later ones: their unsent notices get its grace end.
REGRACE_FAILURE_NOTICES: LiteralString = """
UPDATE notifications SET payload = jsonb_set(payload, '{grace_until}', to_jsonb(%(grace)s::text))
WHERE sent_at IS NULL AND kind = 'payment_failed' AND payload->>'invoice' = %(invoice)s
  AND payload->>'grace_until' IS NOT NULL AND payload->>'grace_until' <> %(grace)s
"""

# A snapshot too old to be written may still name a link the row lacks: links never change.
FILL_INVOICE_LINKS: LiteralString = """
UPDATE invoices SET
    customer_id = coalesce(customer_id, %(customer_id)s),
    subscription_id = coalesce(subscription_id, %(subscription_id)s),
    charge_id = coalesce(charge_id, %(charge_id)s),
    payment_intent_id = coalesce(payment_intent_id, %(payment_intent_id)s)
WHERE id = %(id)s
  AND (customer_id IS NULL AND %(customer_id)s::text IS NOT NULL
       OR subscription_id IS NULL AND %(subscription_id)s::text IS NOT NULL
       OR charge_id IS NULL AND %(charge_id)s::text IS NOT NULL
       OR payment_intent_id IS NULL AND %(payment_intent_id)s::text IS NOT NULL)
"""

FILL_SUBSCRIPTION_LINKS: LiteralString = """
UPDATE subscriptions SET customer_id = %(customer_id)s
WHERE id = %(id)s AND customer_id IS NULL AND %(customer_id)s::text IS NOT NULL
"""

INVOICE_BY_ID: LiteralString = """
SELECT id, status, subscription_id, customer_id, grace_until, hosted_invoice_url,
       amount_due, amount_paid, currency
FROM invoices WHERE id = %(id)s
"""

# Refunded, captured and disputed only ever become true, and amount_refunded only grows: taking
# the larger of the two settles same-second snapshots from events of different keys.
UPSERT_CHARGE: LiteralString = """
INSERT INTO charges AS t (
    id, customer_id, payment_intent_id, invoice_id, amount, amount_captured, amount_refunded,
    currency, captured, paid, refunded, disputed, status, failure_code, failure_message,
    livemode, metadata, created, source_event_created, source_event_id, source_rank, account_id
) VALUES (
    %(id)s, %(customer_id)s, %(payment_intent_id)s, %(invoice_id)s, %(amount)s,
    %(amount_captured)s, %(amount_refunded)s, %(currency)s, %(captured)s, %(paid)s, %(refunded)s,
    %(disputed)s, %(status)s, %(failure_code)s, %(failure_message)s, %(livemode)s, %(metadata)s,
    %(created)s, %(source_event_created)s, %(source_event_id)s, %(source_rank)s,
    %(account_id)s
)
ON CONFLICT (id) DO UPDATE SET
    customer_id = coalesce(EXCLUDED.customer_id, t.customer_id),
    payment_intent_id = coalesce(EXCLUDED.payment_intent_id, t.payment_intent_id),
    invoice_id = coalesce(EXCLUDED.invoice_id, t.invoice_id),
    amount = EXCLUDED.amount,
    amount_captured = EXCLUDED.amount_captured,
    amount_refunded = GREATEST(EXCLUDED.amount_refunded, t.amount_refunded),
    currency = EXCLUDED.currency,
    captured = EXCLUDED.captured OR t.captured,
    paid = EXCLUDED.paid OR t.paid,
    refunded = EXCLUDED.refunded OR t.refunded,
    disputed = EXCLUDED.disputed OR t.disputed,
    status = EXCLUDED.status,
    failure_code = EXCLUDED.failure_code,
    failure_message = EXCLUDED.failure_message,
    livemode = EXCLUDED.livemode,
    metadata = EXCLUDED.metadata,
    created = coalesce(EXCLUDED.created, t.created),
    source_event_created = EXCLUDED.source_event_created,
    source_event_id = EXCLUDED.source_event_id,
    source_rank = EXCLUDED.source_rank,
    account_id = coalesce(EXCLUDED.account_id, t.account_id),
    updated_at = now()
WHERE (t.source_event_created, t.source_rank)
      <= (EXCLUDED.source_event_created, EXCLUDED.source_rank)
  AND NOT (t.status IN ('succeeded', 'failed') AND EXCLUDED.status = 'pending')
RETURNING t.id, t.customer_id, t.amount_refunded, t.refunded, t.currency
"""

# Disputes and refunds name a charge, not a customer: whichever row is written second links them,
# and the unsent notifications waiting for this charge get its customer and are `released` (to be
# sent now). One statement with the charge's upsert (one round trip), written or not: a link
# never changes.
UPSERT_CHARGE_AND_LINK: LiteralString = (
    """
WITH charge AS ("""
    + UPSERT_CHARGE
    + """), linked_disputes AS (
    UPDATE disputes SET customer_id = %(customer_id)s
    WHERE charge_id = %(id)s AND customer_id IS NULL AND %(customer_id)s::text IS NOT NULL
), linked_refunds AS (
    UPDATE refunds SET customer_id = %(customer_id)s
    WHERE charge_id = %(id)s AND customer_id IS NULL AND %(customer_id)s::text IS NOT NULL
), linked_notifications AS (
    UPDATE notifications
    SET customer_id = coalesce(customer_id, %(customer_id)s), awaits_charge = NULL
    WHERE awaits_charge = %(id)s AND sent_at IS NULL
    RETURNING id
)
SELECT (SELECT count(*) FROM charge) AS written,
       ARRAY(SELECT id FROM linked_notifications ORDER BY id) AS released
"""
)

# Two-key advisory locks are a space apart from the workers' one-key ordering locks.
LOCK_CHARGE: LiteralString = (
    "SELECT pg_advisory_xact_lock(1667785586, hashtext(%(charge_id)s)) AS locked"
)

UPSERT_DISPUTE: LiteralString = """
INSERT INTO disputes AS t (
    id, charge_id, customer_id, payment_intent_id, amount, currency, reason, status, livemode,
    metadata, created, source_event_created, source_event_id, source_rank, account_id
) VALUES (
    %(id)s, %(charge_id)s,
    coalesce(%(customer_id)s, (SELECT c.customer_id FROM charges c WHERE c.id = %(charge_id)s)),
    %(payment_intent_id)s, %(amount)s, %(currency)s, %(reason)s, %(status)s, %(livemode)s,
    %(metadata)s, %(created)s, %(source_event_created)s, %(source_event_id)s, %(source_rank)s,
    %(account_id)s
)
ON CONFLICT (id) DO UPDATE SET
    charge_id = coalesce(EXCLUDED.charge_id, t.charge_id),
    customer_id = coalesce(EXCLUDED.customer_id, t.customer_id),
    payment_intent_id = coalesce(EXCLUDED.payment_intent_id, t.payment_intent_id),
    amount = EXCLUDED.amount,
    currency = EXCLUDED.currency,
    reason = EXCLUDED.reason,
    status = EXCLUDED.status,
    livemode = EXCLUDED.livemode,
    metadata = EXCLUDED.metadata,
    created = coalesce(EXCLUDED.created, t.created),
    source_event_created = EXCLUDED.source_event_created,
    source_event_id = EXCLUDED.source_event_id,
    source_rank = EXCLUDED.source_rank,
    account_id = coalesce(EXCLUDED.account_id, t.account_id),
    updated_at = now()
WHERE (t.source_event_created, t.source_rank)
      <= (EXCLUDED.source_event_created, EXCLUDED.source_rank)
  AND NOT (t.status IN ('won', 'lost', 'warning_closed', 'prevented')
           AND EXCLUDED.status IS DISTINCT FROM t.status)
RETURNING t.id, t.customer_id, t.status
"""

UPSERT_REFUND: LiteralString = """
INSERT INTO refunds AS t (
    id, charge_id, customer_id, payment_intent_id, amount, currency, reason, status, livemode,
    metadata, created, source_event_created, source_event_id, source_rank, account_id
) VALUES (
    %(id)s, %(charge_id)s,
    coalesce(%(customer_id)s, (SELECT c.customer_id FROM charges c WHERE c.id = %(charge_id)s)),
    %(payment_intent_id)s, %(amount)s, %(currency)s, %(reason)s, %(status)s, %(livemode)s,
    %(metadata)s, %(created)s, %(source_event_created)s, %(source_event_id)s, %(source_rank)s,
    %(account_id)s
)
ON CONFLICT (id) DO UPDATE SET
    charge_id = coalesce(EXCLUDED.charge_id, t.charge_id),
    customer_id = coalesce(EXCLUDED.customer_id, t.customer_id),
    payment_intent_id = coalesce(EXCLUDED.payment_intent_id, t.payment_intent_id),
    amount = EXCLUDED.amount,
    currency = EXCLUDED.currency,
    reason = EXCLUDED.reason,
    status = EXCLUDED.status,
    livemode = EXCLUDED.livemode,
    metadata = EXCLUDED.metadata,
    created = coalesce(EXCLUDED.created, t.created),
    source_event_created = EXCLUDED.source_event_created,
    source_event_id = EXCLUDED.source_event_id,
    source_rank = EXCLUDED.source_rank,
    account_id = coalesce(EXCLUDED.account_id, t.account_id),
    updated_at = now()
WHERE (t.source_event_created, t.source_rank)
      <= (EXCLUDED.source_event_created, EXCLUDED.source_rank)
RETURNING t.id, t.customer_id, t.status
"""

UPSERT_CHECKOUT_SESSION: LiteralString = """
INSERT INTO checkout_sessions AS t (
    id, client_reference_id, customer_id, subscription_id, invoice_id, payment_intent_id, mode,
    status, payment_status, amount_total, currency, livemode, metadata, created,
    source_event_created, source_event_id, source_rank, account_id
) VALUES (
    %(id)s, %(client_reference_id)s, %(customer_id)s, %(subscription_id)s, %(invoice_id)s,
    %(payment_intent_id)s, %(mode)s, %(status)s, %(payment_status)s, %(amount_total)s,
    %(currency)s, %(livemode)s, %(metadata)s, %(created)s, %(source_event_created)s,
    %(source_event_id)s, %(source_rank)s,
    %(account_id)s
)
ON CONFLICT (id) DO UPDATE SET
    client_reference_id = coalesce(EXCLUDED.client_reference_id, t.client_reference_id),
    customer_id = coalesce(EXCLUDED.customer_id, t.customer_id),
    subscription_id = coalesce(EXCLUDED.subscription_id, t.subscription_id),
    invoice_id = coalesce(EXCLUDED.invoice_id, t.invoice_id),
    payment_intent_id = coalesce(EXCLUDED.payment_intent_id, t.payment_intent_id),
    mode = EXCLUDED.mode,
    status = EXCLUDED.status,
    payment_status = EXCLUDED.payment_status,
    amount_total = EXCLUDED.amount_total,
    currency = EXCLUDED.currency,
    livemode = EXCLUDED.livemode,
    metadata = EXCLUDED.metadata,
    created = coalesce(EXCLUDED.created, t.created),
    source_event_created = EXCLUDED.source_event_created,
    source_event_id = EXCLUDED.source_event_id,
    source_rank = EXCLUDED.source_rank,
    account_id = coalesce(EXCLUDED.account_id, t.account_id),
    updated_at = now()
WHERE (t.source_event_created, t.source_rank)
      <= (EXCLUDED.source_event_created, EXCLUDED.source_rank)
RETURNING t.id
"""

CUSTOMER_OF_CHARGE: LiteralString = "SELECT customer_id FROM charges WHERE id = %(id)s"

# The outbox: one row per (event, kind), and per (dedupe_key, kind) so that a thin event and its
# snapshot twin share one (migration 0013).
INSERT_NOTIFICATION: LiteralString = """
INSERT INTO notifications
    (event_id, dedupe_key, kind, customer_id, payload, awaits_charge, enqueued_at)
VALUES (
    %(event_id)s, %(dedupe_key)s, %(kind)s, %(customer_id)s, %(payload)s, %(awaits_charge)s,
    now()
)
ON CONFLICT DO NOTHING
RETURNING id
"""

# Claimed before sending (committed on its own), so two deliveries of one row never both send.
# The claim, with the customer's contact as the mirror has it now (none once deleted), and why it
# is no longer worth sending (`moot`), if it is not: the invoice a failure notice is about has
# been paid or voided since, the trial has ended. A row waiting for its charge (the customer is
# not known yet) is not claimed until the charge arrives or `link_wait` has passed.
CLAIM_NOTIFICATION: LiteralString = """
WITH claimed AS (
    UPDATE notifications SET sent_at = now(), attempts = attempts + 1
    WHERE id = %(id)s AND sent_at IS NULL AND attempts < %(max_attempts)s
      AND (awaits_charge IS NULL OR created_at < now() - %(link_wait)s)
    RETURNING id, event_id, kind, customer_id, payload, attempts
)
SELECT claimed.*, c.email, c.name,
    CASE
        WHEN i.status IN ('paid', 'void') THEN 'the invoice is ' || i.status
        WHEN s.status <> 'trialing' THEN 'the subscription is ' || s.status
    END AS moot
FROM claimed
LEFT JOIN customers c ON c.id = claimed.customer_id AND NOT c.deleted
LEFT JOIN invoices i ON claimed.kind IN ('payment_failed', 'payment_action_required')
    AND i.id = claimed.payload->>'invoice'
LEFT JOIN subscriptions s ON claimed.kind = 'trial_ending'
    AND s.id = claimed.payload->>'subscription'
"""

RELEASE_NOTIFICATION: LiteralString = """
UPDATE notifications SET sent_at = NULL, last_error = %(error)s WHERE id = %(id)s
"""

NOTE_DELIVERY: LiteralString = """
UPDATE notifications SET last_error = %(note)s WHERE id = %(id)s
"""

# Unsent rows whose message may be lost: older than `min_age` and not enqueued for as long.
STRANDED_NOTIFICATIONS: LiteralString = """
UPDATE notifications SET enqueued_at = now()
WHERE id IN (
    SELECT id FROM notifications
    WHERE sent_at IS NULL AND attempts < %(max_attempts)s
      AND created_at < now() - %(min_age)s
      AND (enqueued_at IS NULL OR enqueued_at < now() - %(min_age)s)
    ORDER BY created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""

ACCESS_FOR: LiteralString = """
SELECT customer_id, has_access, reason, until
FROM customer_access_at(coalesce(%(at)s::timestamptz, now()))
WHERE customer_id = %(customer_id)s
"""
