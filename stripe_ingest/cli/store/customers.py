"""Queries of `customers show` (and the console's customer page): one customer's mirror rows and
access decision. Its events come from `list_events` with `Filter(customer=...)`."""

from __future__ import annotations

from typing import LiteralString

from stripe_ingest.cli.store.base import Connection, Row, _all, translated

_OF_CHARGES: LiteralString = "charge_id IN (SELECT id FROM charges WHERE customer_id = %(c)s)"
# Each mirror table and how its rows belong to the customer. Disputes and refunds often name no
# customer: they belong to it through one of its charges.
MIRROR: dict[str, LiteralString] = {
    "customers": "SELECT * FROM customers WHERE id = %(c)s",
    "subscriptions": "SELECT * FROM subscriptions WHERE customer_id = %(c)s ORDER BY created, id",
    "invoices": "SELECT * FROM invoices WHERE customer_id = %(c)s ORDER BY created, id",
    "charges": "SELECT * FROM charges WHERE customer_id = %(c)s ORDER BY created, id",
    "disputes": "SELECT * FROM disputes WHERE customer_id = %(c)s OR "
    + _OF_CHARGES
    + " ORDER BY created, id",
    "refunds": "SELECT * FROM refunds WHERE customer_id = %(c)s OR "
    + _OF_CHARGES
    + " ORDER BY created, id",
    "checkout_sessions": "SELECT * FROM checkout_sessions WHERE customer_id = %(c)s"
    " ORDER BY created, id",
}


def mirror_of(conn: Connection, customer_id: str) -> dict[str, list[Row]]:
    """The customer's rows in every mirror table (empty lists where it has none)."""
    return {table: _all(conn, query, {"c": customer_id}) for table, query in MIRROR.items()}


def access_of(conn: Connection, customer_id: str) -> Row:
    """The access decision (worker.mirror.access, the one definition) as a row."""
    from worker.mirror.access import customer_access

    with translated():
        decision = customer_access(conn, customer_id)
    return {
        "customer_id": decision.customer_id,
        "has_access": decision.has_access,
        "reason": decision.reason,
        "until": decision.until,
    }
