"""Messages that name many events: their keys are processed together, many per transaction.

The receiver sends one message per committed batch of events, each with its ordering key. The
worker takes the try-lock of every key in one statement, with each locked key's earliest pending
events in creation order (row-locked), runs their handlers one event after another, and finishes
them all in one statement pipelined with the COMMIT and a look at what the keys have left. A
round costs two round trips besides the handlers' own statements, whatever the number of events.

The round is optimistic: no savepoint per event. When a handler fails (or the database refuses
something), the whole round is rolled back and its keys are processed again one at a time by
`Processor.drain`, which isolates each event in a savepoint and records the failure, the retry
and the dead letter. Handlers only write in the transaction, so running them again is safe.

Ordering holds as in `Processor.drain`: a key is only read under its lock; a key whose lock is
busy is skipped, and its holder looks at the key again after letting go; a key whose earliest
pending event waits for its retry is skipped (its delayed message comes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from shared.db import Connection
from worker import sql
from worker.outcomes import event_from_row
from worker.policy import key_lock_id
from worker.registry import Event, Tx

if TYPE_CHECKING:
    from worker.outcomes import Outcome
    from worker.processing import Processor

log = structlog.get_logger("worker.processing")

# Events per transaction: the mirror's row locks are held until its commit.
MAX_EVENTS = 128
# Pending events read per key and round (the rest waits for the next round).
MAX_PER_KEY = 16
# A round stops taking events after this long; the next round goes on.
MAX_ROUND_SECONDS = 0.25
# Rounds that finish nothing before the message gives up (keys busy elsewhere).
MAX_IDLE_ROUNDS = 3


class _HandlerFailed(Exception):
    """A handler of the round failed: roll it back, go one key at a time."""


@dataclass(frozen=True)
class _Done:
    tx: Tx
    event: Event
    status: str
    started: datetime
    received: datetime


def handle_many(proc: Processor, events: Sequence[tuple[str, str]]) -> list[Outcome]:
    """Process the keys of `events` ((event id, ordering key) pairs), in the message's order."""
    keys = list(dict.fromkeys(key for _, key in events))
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + proc.drain_seconds
    idle = 0
    with proc.connection() as conn:
        while keys:
            try:
                done, heads = _round(proc, conn, keys)
            except _HandlerFailed:
                conn.execute("ROLLBACK")
                # Isolate the failure: each key on its own, each event in its savepoint.
                for key in keys:
                    outcomes.extend(proc.drain_key(conn, key))
                return outcomes
            outcomes.extend(done)
            idle = 0 if done else idle + 1
            runnable = {key: head for key, (head, wait) in heads.items() if wait <= 0}
            if not runnable or idle >= MAX_IDLE_ROUNDS:
                return outcomes
            if proc.stopping.is_set() or time.monotonic() > deadline:
                for head in runnable.values():
                    proc.hand_over(head)
                return outcomes
            keys = list(runnable)
    return outcomes


def _round(
    proc: Processor, conn: Connection, keys: list[str]
) -> tuple[list[Outcome], dict[str, tuple[str, float]]]:
    """One transaction: lock the keys, run their runnable events, finish them and commit. Then,
    read after the commit, each held key's earliest pending event and its wait (0: runnable)."""
    per_key = max(2, min(MAX_PER_KEY, MAX_EVENTS // len(keys) + 1))
    with conn.pipeline():
        conn.execute("BEGIN")
        cur = conn.execute(
            sql.LOCK_KEYS_NEXT,
            {"keys": keys, "locks": [key_lock_id(k) for k in keys], "per_key": per_key},
        )
    rows = cur.fetchall()
    held = list(dict.fromkeys(row["key"] for row in rows if row["locked"]))
    done: list[_Done] = []
    stopped: set[str] = set()
    round_end = time.monotonic() + MAX_ROUND_SECONDS
    for row in rows:
        key = row["key"]
        if row["id"] is None or key in stopped:
            continue
        if row["wait"] > 0 or len(done) >= MAX_EVENTS or time.monotonic() > round_end:
            stopped.add(key)  # waits for its retry, or the next round takes it
            continue
        done.append(_run(proc, conn, row))
    finish_cur = peek_cur = None
    with conn.pipeline():
        if done:
            finish_cur = conn.execute(
                sql.FINISH_MANY,
                {
                    "ids": [d.event.id for d in done],
                    "statuses": [d.status for d in done],
                    "started": [d.started for d in done],
                    "worker": proc.worker_id,
                },
            )
        conn.execute("COMMIT")
        if held:
            peek_cur = conn.execute(sql.PEEK_KEYS, {"keys": held})
    finished = (
        {r["event_id"]: r["finished_at"] for r in finish_cur.fetchall()} if finish_cur else {}
    )
    heads = (
        {r["ordering_key"]: (r["id"], r["wait"]) for r in peek_cur.fetchall()} if peek_cur else {}
    )
    outcomes = proc.batch_committed(
        [(d.tx, d.event, d.status, d.started, d.received, finished[d.event.id]) for d in done]
    )
    return outcomes, heads


def _run(proc: Processor, conn: Connection, row: dict[str, Any]) -> _Done:
    event = event_from_row(row)
    tx = Tx(conn=conn, settings=proc.settings)
    started = datetime.now(UTC)
    handlers = proc.registry.handlers_for(event.type)
    # Bound for the handlers' log lines (tokens, not `bound_contextvars`: that copies every
    # bound variable, per event).
    tokens = structlog.contextvars.bind_contextvars(event_id=event.id, event_type=event.type)
    try:
        failure = proc.run_handlers(conn, tx, event, handlers)
        if failure is not None:
            log.info("worker.round_rolled_back", error=type(failure[0]).__name__)
            raise _HandlerFailed from failure[0]
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    status = "processed" if handlers else "ignored"
    return _Done(tx, event, status, started, row["received_at"])
