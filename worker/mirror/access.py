"""Access decisions: may this customer use what they pay for, and until when?

One definition, in SQL (`customer_access_at(at)` in migrations/0003_mirror.sql): the view
`customer_access` is that function at now(), and `customer_access()` below calls it at any time
you pass, so the two never disagree. Rules, first match wins:

1. the customer is deleted: no (`customer_deleted`);
2. a dispute on one of the customer's charges is open: no (`dispute_open`);
3. the latest successful payment was lost in a dispute: no (`dispute_lost`);
4. the latest successful payment was fully refunded: no (`payment_refunded`);
5. the best of the customer's subscriptions decides: `active` or `trialing`: yes, until the period
   or trial end; `past_due`: yes until the grace end (GRACE_PERIOD_DAYS after the first failed
   payment of its unpaid invoice, stored when the failure is recorded), then no
   (`grace_expired`); `canceled`, `unpaid`, `incomplete`, `incomplete_expired`, `paused`: no,
   with the status as the reason;
6. no subscription: no (`no_subscription`). A customer the mirror has never seen: no
   (`unknown_customer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import DictRow

from shared.db import DatabaseUnavailable
from shared.errors import error_line, is_outage
from worker.mirror import queries


@dataclass(frozen=True)
class Access:
    customer_id: str
    has_access: bool
    reason: str
    until: datetime | None


def customer_access(
    conn: psycopg.Connection[DictRow], customer_id: str, now: datetime | None = None
) -> Access:
    """The decision for `customer_id` at `now` (default: the database's now)."""
    try:
        row = conn.execute(queries.ACCESS_FOR, {"customer_id": customer_id, "at": now}).fetchone()
    except psycopg.Error as e:
        if is_outage(e, conn):
            raise DatabaseUnavailable(error_line(e, with_type=False)) from e
        raise  # a deadlock or a refusal: the event's transaction deals with it
    if row is None:
        return Access(customer_id, False, "unknown_customer", None)
    return Access(row["customer_id"], row["has_access"], row["reason"], row["until"])
