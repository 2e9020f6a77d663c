"""One round: a transaction that locks ordering keys, runs their events and finishes them.

`pg_try_advisory_xact_lock` per key makes this transaction the key's only holder across
processes and hosts until it ends; a key is read only under its lock, so its events run in
creation order (`created, received_at, id`). The round runs each event's handlers one after
another with no savepoint, then finishes them all in one statement pipelined with the COMMIT
and a look at what each held key has left: two round trips besides the handlers' statements.

The round is optimistic: a failure rolls all of it back. `HandlerFailed` names the event whose
handler failed; `RoundRefused` says PostgreSQL refused the round outside the handlers (the
finishing UPDATE, a trigger, a deferred constraint at COMMIT) and names the events it held.
A lost connection raises `DatabaseUnavailable`: nobody's fault.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

import psycopg
import structlog
from psycopg.pq import TransactionStatus

from shared.db import Connection
from shared.errors import DatabaseUnavailable, HandlerError, error_line, is_conflict, is_outage
from shared.settings import Settings
from worker import sql, thin
from worker.inflight import InFlight
from worker.policy import key_lock_id
from worker.registry import Registry, Services

log = structlog.get_logger("worker.processing")

# Events per round: the mirror's row locks are held until its commit.
MAX_EVENTS = 128
# Pending events read per key and round (the rest waits for the next round).
MAX_PER_KEY = 16
# A round stops taking events after this long; the next round goes on.
MAX_ROUND_SECONDS = 0.25


class HandlerFailed(HandlerError):
    """A handler failed on `inflight`'s event (or left its transaction unusable)."""

    def __init__(self, inflight: InFlight, error: BaseException, tb: str) -> None:
        super().__init__(error_line(error))
        self.inflight, self.error, self.traceback = inflight, error, tb


class RoundConflict(Exception):
    """The round collided with a concurrent transaction (a deadlock): run it again."""


class RoundRefused(Exception):
    """PostgreSQL refused the round outside the handlers; `events` ran in it."""

    def __init__(self, events: list[InFlight], error: psycopg.Error) -> None:
        super().__init__(error_line(error))
        self.events, self.error = events, error


@dataclass(frozen=True)
class RoundSpec:
    """What every round of a worker needs, besides the connection and the keys."""

    settings: Settings
    registry: Registry
    services: Services
    worker_id: str
    # Exceptions besides Exception that count as a handler failure (Dramatiq's time limit).
    failures: tuple[type[BaseException], ...] = ()

    @property
    def failure_types(self) -> tuple[type[BaseException], ...]:
        return (Exception, *self.failures)


@dataclass
class Round:
    """What a committed round finished, and each held key's earliest pending event as read
    after the commit: (event id, seconds it still waits for its retry; 0 when runnable)."""

    done: list[InFlight] = field(default_factory=list)
    heads: dict[str, tuple[str, float]] = field(default_factory=dict)


def per_key_limit(keys: int) -> int:
    return max(2, min(MAX_PER_KEY, MAX_EVENTS // max(keys, 1) + 1))


def run_round(
    conn: Connection,
    spec: RoundSpec,
    keys: list[str],
    per_key: int,
    claimed: frozenset[str] = frozenset(),
    failed: frozenset[str] = frozenset(),
) -> Round:
    """Lock `keys`, run at most `per_key` events of each, finish them and commit. Events in
    `claimed` had their attempt counted before (see `worker.engine`); a key stops at an event
    in `failed` (it failed in this message: its retry's message runs it)."""
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            cur = conn.execute(
                sql.LOCK_KEYS_NEXT,
                {"keys": keys, "locks": [key_lock_id(k) for k in keys], "per_key": per_key},
            )
        rows = cur.fetchall()
    except psycopg.Error as e:
        raise _translated(e, conn, []) from e
    held = list(dict.fromkeys(row["key"] for row in rows if row["locked"]))
    done: list[InFlight] = []
    stopped: set[str] = set()
    round_end = time.monotonic() + MAX_ROUND_SECONDS
    parts = (conn, spec.settings, spec.services)
    for row in rows:
        key = row["key"]
        if row["id"] is None or key in stopped:
            continue
        waits = (row["wait"] > 0 and row["id"] not in claimed) or row["id"] in failed
        if waits or len(done) >= MAX_EVENTS or time.monotonic() > round_end:
            stopped.add(key)  # waits for its retry, or the next round takes it
            continue
        inflight = InFlight.from_row(row, parts, counted=row["id"] in claimed)
        run_handlers(conn, spec, inflight)
        done.append(inflight)
    return _finish(conn, spec, done, held)


def run_handlers(conn: Connection, spec: RoundSpec, inflight: InFlight) -> None:
    """Run the event's handlers in the round's transaction; set its status."""
    handlers = spec.registry.handlers_for(inflight.event.type)
    # Bound for the handlers' log lines (tokens, not `bound_contextvars`: that copies every
    # bound variable, per event).
    tokens = structlog.contextvars.bind_contextvars(
        event_id=inflight.event.id, event_type=inflight.event.type
    )
    try:
        if handlers and inflight.event.thin:  # its object is read from Stripe first
            inflight.event = thin.prepare(inflight.event, spec.services.stripe)
        for handler in handlers:
            handler(inflight.tx, inflight.event)
        if conn.info.transaction_status != TransactionStatus.INTRANS:
            raise RuntimeError("a handler committed, rolled back or broke the transaction")
    except spec.failure_types as e:
        if is_outage(e, conn):
            raise DatabaseUnavailable(error_line(e, with_type=False)) from e
        if _conflict(e):
            raise RoundConflict(error_line(e)) from e
        raise HandlerFailed(inflight, e, traceback.format_exc()) from e
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
    inflight.status = "processed" if handlers else "ignored"


def _finish(conn: Connection, spec: RoundSpec, done: list[InFlight], held: list[str]) -> Round:
    finish_curs = []
    peek_cur = None
    fresh = [d for d in done if not d.counted]
    try:
        with conn.pipeline():
            if fresh:
                finish_curs.append(
                    conn.execute(
                        sql.FINISH_MANY,
                        {
                            "ids": [d.id for d in fresh],
                            "statuses": [d.status for d in fresh],
                            "started": [d.started for d in fresh],
                            "worker": spec.worker_id,
                        },
                    )
                )
            for d in done:
                if d.counted:
                    params = {"id": d.id, "status": d.status, "worker": spec.worker_id}
                    finish_curs.append(conn.execute(sql.FINISH_CLAIMED, params))
            conn.execute("COMMIT")
            if held:
                peek_cur = conn.execute(sql.PEEK_KEYS, {"keys": held})
        finished = {r["event_id"]: r["finished_at"] for cur in finish_curs for r in cur.fetchall()}
        heads = (
            {r["ordering_key"]: (r["id"], r["wait"]) for r in peek_cur.fetchall()}
            if peek_cur
            else {}
        )
    except psycopg.Error as e:
        raise _translated(e, conn, done) from e
    for d in done:
        d.finished_at = finished.get(d.id)
    return Round(done, heads)


def _translated(error: psycopg.Error, conn: Connection, done: list[InFlight]) -> Exception:
    if is_outage(error, conn):
        return DatabaseUnavailable(error_line(error, with_type=False))
    if is_conflict(error):
        return RoundConflict(error_line(error))
    return RoundRefused(done, error)


def _conflict(error: BaseException) -> bool:
    """A deadlock, also when a handler's own code wrapped it (`raise ... from e`)."""
    while error is not None:
        if is_conflict(error):
            return True
        error = error.__cause__  # type: ignore[assignment]
    return False
