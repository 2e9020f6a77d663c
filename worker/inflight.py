"""The record of one event while a worker processes it, and what became of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.registry import Event, Services, Tx

Status = str  # processed, ignored, retry, dead


@dataclass(frozen=True)
class Outcome:
    event_id: str
    status: Status
    attempt: int
    error: str | None = None
    retry_in_ms: int | None = None


@dataclass
class InFlight:
    """An event taken under its key's lock: its row as read, the transaction its handlers
    write in, and, once they ran, its status (then `finished_at` once the UPDATE returned)."""

    event: Event
    tx: Tx
    received_at: datetime
    # Its latest enqueue: the receipt, or the replay that put it back to pending.
    enqueued_at: datetime
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: Status = "pending"
    finished_at: datetime | None = None
    # Its attempt was counted before its handlers ran (a claimed suspect, see worker.engine).
    counted: bool = False

    @classmethod
    def from_row(
        cls, row: dict[str, Any], tx_parts: tuple[Any, Any, Services], counted: bool = False
    ) -> InFlight:
        conn, settings, services = tx_parts
        event = Event(
            id=row["id"],
            type=row["type"],
            created=row["created"],
            livemode=row["livemode"],
            api_version=row["api_version"],
            account=row["account"],
            ordering_key=row["ordering_key"],
            payload=row["payload"],
            attempt=row["attempts"] + (0 if counted else 1),
            kind=row.get("kind") or "snapshot",
            endpoint=row.get("endpoint"),
            snapshot_event=row.get("snapshot_event"),
        )
        tx = Tx(conn=conn, settings=settings, services=services)
        return cls(event, tx, row["received_at"], row["enqueued"], counted=counted)

    @property
    def id(self) -> str:
        return self.event.id

    def outcome(self) -> Outcome:
        return Outcome(self.event.id, self.status, self.event.attempt)
