"""What the two ways of processing share: an event's outcome, the Event built from its row, and
what happens once a transaction that finished events has committed (its log lines, the items
its handlers deferred)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from shared.logging import log_ids
from worker.policy import error_line
from worker.registry import Event, Tx

log = structlog.get_logger("worker.processing")


@dataclass(frozen=True)
class Outcome:
    event_id: str
    status: str  # processed, ignored, retry, dead
    attempt: int
    error: str | None = None
    retry_in_ms: int | None = None


def run_deferred(txs: list[Tx]) -> None:
    """Each deferred function once, with the items of every transaction's events in order."""
    groups: dict[Callable[[list[Any]], None], list[Any]] = {}
    for tx in txs:
        for fn, item in tx.deferred:
            groups.setdefault(fn, []).append(item)
    for fn, items in groups.items():
        try:
            fn(items)
        except Exception as e:
            log.error("worker.after_commit_failed", count=len(items), error=error_line(e))


def log_committed(event_ids: list[str]) -> None:
    """Info lines naming the events a transaction finished."""
    log_ids(log, "events.finished", event_ids)


def event_from_row(row: dict[str, Any]) -> Event:
    return Event(
        id=row["id"],
        type=row["type"],
        created=row["created"],
        livemode=row["livemode"],
        api_version=row["api_version"],
        account=row["account"],
        ordering_key=row["ordering_key"],
        payload=row["payload"],
        attempt=row["attempts"] + 1,
    )
