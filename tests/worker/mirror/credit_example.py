"""The handler of docs/howto/write-a-handler.md (USER_HANDLERS=tests.worker.mirror.credit_example):
credit an account when an invoice is paid, once per invoice whatever Stripe or an operator
re-sends. It runs after the mirror's handler, in the same transaction: the invoice row it reads
is already written, and if anything fails both roll back together.

Never import this module in the test process: importing it registers the handler for every test.
Its table (test_processes.CREATE_CREDITS) is created by the test that uses it."""

from __future__ import annotations

from worker.registry import Event, Tx, handles


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
