"""Stripe objects read from the API (not from an event) written into the mirror, through the
handlers' own readers (`shapes`) and stale-proof upserts (`queries`).

Such an object is as of the moment it was read, so its row is stamped with that moment: an
event created later still overwrites it, an older one does not. `stripe-ingest reconcile` uses
this to compare the mirror with Stripe and to repair it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, LiteralString

from shared.db import Connection
from worker.mirror import queries, shapes

Row = dict[str, Any]

_TABLES: dict[str, tuple[Callable[[Mapping[str, Any]], Row], LiteralString]] = {
    "customers": (shapes.customer, queries.UPSERT_CUSTOMER),
    "subscriptions": (shapes.subscription, queries.UPSERT_SUBSCRIPTION),
    "invoices": (shapes.invoice, queries.UPSERT_INVOICE),
}
TABLES = tuple(_TABLES)


def row_of(table: str, obj: Mapping[str, Any], read_at: datetime, source_id: str) -> Row:
    """The row the mirror's handlers would write for `obj`, as of `read_at`."""
    shape, _ = _TABLES[table]
    row = shape(obj)
    if table == "customers":
        row["deleted_at"] = read_at if row["deleted"] else None
    # The platform's objects (reconcile reads no connected account): an account kept as it is.
    return {
        **row,
        "source_event_created": read_at,
        "source_event_id": source_id,
        "account_id": None,
    }


def write(conn: Connection, table: str, row: Row) -> None:
    """Upsert `row` (from `row_of`); skipped, as for events, when the mirror's row is newer or in
    a status Stripe never leaves."""
    conn.execute(_TABLES[table][1], row)


def status_of(table: str, row: Mapping[str, Any]) -> str | None:
    """What `reconcile` compares as the status: Stripe's status string; for a customer, whether
    it is deleted."""
    if table == "customers":
        return "deleted" if row.get("deleted") else "present"
    status = row.get("status")
    return status if isinstance(status, str) else None
