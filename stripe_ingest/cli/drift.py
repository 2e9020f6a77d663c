"""What `reconcile` reports: how one mirror row differs from Stripe's object.

The comparison is the fix itself: Stripe's object goes through the handlers' upsert in a
transaction that is rolled back, and the row before is compared with the row after. So the
drift is exactly what `--fix` changes, with the upserts' rules (a row written from a newer event
is left alone, final statuses stay, fields Stripe omits keep what the mirror knows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from worker.mirror import objects

Row = dict[str, Any]

# Columns a write always changes, or that are not Stripe's (a payment failure's grace, the
# rank that orders same-second writes).
BOOKKEEPING = frozenset(
    (
        "updated_at",
        "source_event_created",
        "source_event_id",
        "source_rank",
        "first_failed_at",
        "grace_until",
    )
)
# missing: Stripe has it, the mirror not. stale: the mirror's row is older than Stripe's object
# and differs from it. status: it has another status (customers: deleted or not).
# not_at_stripe: the mirror has it, Stripe does not know it.
KINDS = ("missing", "stale", "status", "not_at_stripe")


@dataclass
class Drift:
    table: str
    id: str
    drift: str
    mirror_status: str | None = None
    stripe_status: str | None = None
    fields: list[str] = field(default_factory=list)
    # When the mirror's row was last written (its event's `created`, or a read of the API).
    mirror_as_of: datetime | None = None
    # Whether --fix writes Stripe's object over it (False: it needs a person).
    fixable: bool = False
    fixed: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def classify(
    table: str, stripe_row: Row, before: Row | None, after: Row | None, read_at: datetime
) -> Drift | None:
    """The drift of one object, from its row as the upsert would write it (`stripe_row`) and
    the mirror's row before and after that upsert; None when they agree."""
    source = stripe_row["source_event_id"]
    written = after is not None and after["source_event_id"] == source
    stripe_status = objects.status_of(table, stripe_row)
    object_id = str(stripe_row["id"])
    if before is None:
        return Drift(table, object_id, "missing", None, stripe_status, fixable=written)
    if before["source_event_created"] > read_at:
        return None  # written from an event newer than what Stripe told us
    mirror_status = objects.status_of(table, before)
    changed = sorted(
        k for k in before if k not in BOOKKEEPING and before[k] != (after or {}).get(k)
    )
    drift = Drift(
        table,
        object_id,
        "stale",
        mirror_status,
        stripe_status,
        changed,
        before["source_event_created"],
    )
    if mirror_status != stripe_status:
        drift.drift = "status"
        drift.fixable = written and objects.status_of(table, after or {}) == stripe_status
        return drift
    if changed:
        drift.fixable = written
        return drift
    return None
