"""Stripe's order of two snapshots of one object that share a `created` second.

`created` has one-second resolution and the worker only sees arrival order, so each write also
stores a rank, and the upserts compare `(source_event_created, source_rank)`: a same-second
snapshot that comes earlier in Stripe's order never overwrites a later one, whichever arrives
first. The rank is read from the event alone (lists compare element by element):

1. origin: an event's snapshot (0), or the object as read from Stripe's API (1), which is at
   least as new as any event of its second;
2. the event type: the object's creation (`*.created`, a charge's first status) 0, updates 1,
   the end (`*.deleted`, `charge.dispute.closed`) 2;
3. the status along Stripe's transitions (incomplete, trialing, active, past_due, unpaid or
   paused, then canceled; draft, open, uncollectible, then paid or void; ...), where an update
   whose `previous_attributes.status` names a later status (past_due -> active) comes just
   after the status it left;
4. counters that only grow (an invoice's `attempt_count`, a charge's `amount_refunded`, a
   dispute's balance transactions);
5. last, a fixed number drawn from the event id: two events the rules above cannot order end
   in the same row in every delivery order (which one is arbitrary). Objects read from the API
   carry the microsecond of the read instead: the later read wins.

See docs/explanation/mirror-guarantees.md for the limits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

# Kind -> status -> its step in Stripe's transitions (later steps are later in time).
LEVELS: dict[str, dict[str, int]] = {
    "subscription": {
        "incomplete": 0,
        "trialing": 1,
        "active": 2,
        "past_due": 3,
        "unpaid": 4,
        "paused": 4,
        "canceled": 5,
        "incomplete_expired": 5,
    },
    "invoice": {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3},
    "charge": {"pending": 0, "succeeded": 1, "failed": 1},
    "dispute": {
        "warning_needs_response": 0,
        "warning_under_review": 1,
        "needs_response": 2,
        "under_review": 3,
        "warning_closed": 4,
        "won": 4,
        "lost": 4,
        "prevented": 4,
    },
    "refund": {"requires_action": 0, "pending": 1, "succeeded": 2, "failed": 2, "canceled": 2},
}

# Event types that begin or end an object's life (any other type is an update).
_FIRST = frozenset({"charge.pending", "charge.succeeded", "charge.failed"})
_LAST = frozenset({"charge.dispute.closed"})

SNAPSHOT, READ = 0, 1


def type_step(event_type: str) -> int:
    if event_type.endswith(".created") or event_type in _FIRST:
        return 0
    if event_type.endswith(".deleted") or event_type in _LAST:
        return 2
    return 1


def status_step(kind: str, status: Any, previous: Any = None) -> int:
    """Twice the status's level; an update back to an earlier status (previous_attributes name
    the one it left) goes just after the one it left. Statuses we do not know rank first."""
    levels = LEVELS.get(kind, {})
    level = levels.get(status, 0) if isinstance(status, str) else 0
    if isinstance(previous, str) and previous in levels and levels[previous] >= level:
        return 2 * levels[previous] + 1
    return 2 * level


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def counters(kind: str, obj: Mapping[str, Any]) -> list[int]:
    """Fields that only grow over the object's life."""
    if kind == "invoice":
        return [_count(obj.get("attempt_count"))]
    if kind == "charge":
        return [
            _count(obj.get("amount_refunded")),
            int(obj.get("captured") is True),
            int(obj.get("disputed") is True),
        ]
    if kind == "dispute":
        txns = obj.get("balance_transactions")
        return [len(txns) if isinstance(txns, list) else 0]
    return []


def event_tiebreak(event_id: str) -> int:
    """A fixed, arbitrary number for an event id (the same on every host and every replay)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=4).digest()) >> 1


def of_event(
    kind: str,
    event_type: str,
    event_id: str,
    obj: Mapping[str, Any],
    previous: Mapping[str, Any],
) -> list[int]:
    """The rank of the snapshot an event carries."""
    return [
        SNAPSHOT,
        type_step(event_type),
        status_step(kind, obj.get("status"), previous.get("status")),
        *counters(kind, obj),
        event_tiebreak(event_id),
    ]


def of_read(read_at: datetime | None = None) -> list[int]:
    """The rank of an object read from Stripe's API at `read_at` (its second is the stamp)."""
    return [READ, read_at.microsecond if read_at else 0]
