"""The README's example of a user's own handler (USER_HANDLERS=tests.worker.mirror.credit_example):
credit an account when an invoice is paid, once per invoice whatever Stripe or an operator
re-sends. It runs after the mirror's handler, in the same transaction: the invoice row it reads
is already written, and if anything fails both roll back together."""

from __future__ import annotations

from worker.registry import Event, Tx, handles

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS account_credits (
    invoice_id  text PRIMARY KEY,  -- the idempotency key: one credit per paid invoice
    customer_id text NOT NULL,
    amount      bigint NOT NULL,
    currency    text NOT NULL,
    event_id    text NOT NULL,
    credited_at timestamptz NOT NULL DEFAULT now()
)
"""


@handles("invoice.paid")
def credit_account(tx: Tx, event: Event) -> None:
    invoice = tx.execute(
        "SELECT id, customer_id, amount_paid, currency FROM invoices WHERE id = %s",
        (event.object["id"],),
    ).fetchone()
    if invoice is None or not invoice["amount_paid"]:
        return
    tx.execute(
        """
        INSERT INTO account_credits (invoice_id, customer_id, amount, currency, event_id)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (invoice_id) DO NOTHING
        """,
        (
            invoice["id"],
            invoice["customer_id"],
            invoice["amount_paid"],
            invoice["currency"],
            event.id,
        ),
    )
