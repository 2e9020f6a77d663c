"""Process stored events: one key at a time, in creation order, effects exactly once.

A message names an event; its worker becomes the *holder* of the event's ordering key by taking
`pg_try_advisory_xact_lock(key)` inside each transaction. The holder drains the key: per
transaction it locks, takes the earliest pending event (`created, received_at, id`), runs its
handlers in a savepoint, and commits the handlers' writes with `status`, `attempts`,
`processed_at` and `process_seq`. If the lock is busy the message returns at once: the holder
drains the key, and re-checks it after letting go, so a message that lost the race is never lost.

A failing handler rolls back to the savepoint; the failure (attempt, error, backoff) is written in
the same transaction, still under the key's lock, and a delayed message is sent after commit.
Statements are pipelined: an event with no other pending event of its key costs four round
trips (look-up; begin + lock + select + savepoint; finish + commit; the re-check).
While an event waits for its retry, the later events of its key wait too (ordering). After
`WORKER_MAX_RETRIES` failed attempts it becomes `dead` with its `dead_letters` row and the key
moves on. Database or broker outages raise: the row stays `pending` and the sweeper re-sends it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.settings import Settings
from worker import sql
from worker.metrics import WorkerMetrics
from worker.policy import backoff_ms, error_line, key_lock_id, traceback_text
from worker.registry import REGISTRY, Event, Registry, Tx

log = structlog.get_logger(__name__)

# Enqueue a message for an event id, after `delay_ms` (None: now). Raises if the broker fails.
Enqueue = Callable[[str, "int | None"], None]

# A holder hands its key over after this long, so one busy key cannot hold a thread forever.
MAX_DRAIN_SECONDS = 30.0
# A retry message that arrives this early (clock skew) waits instead of being dropped.
EARLY_TOLERANCE_SECONDS = 0.25


@dataclass(frozen=True)
class Outcome:
    event_id: str
    status: str  # processed, ignored, retry, dead
    attempt: int
    error: str | None = None
    retry_in_ms: int | None = None
    # Another pending event of the key was seen before commit: keep draining without a re-check.
    more: bool = False


@dataclass(frozen=True)
class _Idle:
    """Nothing runnable for the key under its lock; `waiting` is a head waiting for its retry."""

    waiting: str | None = None
    wait: float = 0.0


_BUSY = "busy"


@dataclass
class Processor:
    pool: ConnectionPool[Connection]
    settings: Settings
    enqueue: Enqueue
    registry: Registry = REGISTRY
    metrics: WorkerMetrics | None = None
    worker_id: str = "worker"
    # Set when the worker shuts down: holders hand their key over instead of draining on.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Exceptions besides Exception that count as a handler failure (e.g. Dramatiq's time limit).
    failures: tuple[type[BaseException], ...] = ()

    def handle(self, event_id: str) -> list[Outcome]:
        """Handle one message: no-op unless the event is pending; else drain its key."""
        with self._connection() as conn:
            head = conn.execute(sql.EVENT_HEAD, (event_id,)).fetchone()
        if head is None:
            log.warning("worker.event_unknown", event_id=event_id)
            return []
        if head["status"] != "pending":
            return []
        return self.drain(head["ordering_key"], event_id)

    def drain(self, ordering_key: str, for_event: str | None = None) -> list[Outcome]:
        """Finish what is runnable for the key, in creation order, while we hold it."""
        lock_id = key_lock_id(ordering_key)
        deadline = time.monotonic() + MAX_DRAIN_SECONDS
        outcomes: list[Outcome] = []
        idle_rounds = 0
        while True:
            step = self._step(ordering_key, lock_id)
            if step == _BUSY:
                return outcomes
            if isinstance(step, Outcome):
                outcomes.append(step)
                idle_rounds = 0
                if self.stopping.is_set() or time.monotonic() > deadline:
                    self._hand_over(ordering_key)
                    return outcomes
                if step.more:
                    continue
            else:
                assert isinstance(step, _Idle)
                idle_rounds += 1
                # This message's own retry arrived a little early (clock skew): wait for it,
                # unless this drain just failed it (then its delayed message is on the way).
                early = step.waiting is not None and step.waiting == for_event
                retried_here = any(o.event_id == step.waiting for o in outcomes)
                if early and not retried_here and step.wait <= EARLY_TOLERANCE_SECONDS:
                    time.sleep(step.wait + 0.01)
                    continue
            # We let go of the key; a message whose try-lock failed meanwhile relies on this.
            if idle_rounds > 3 or not self._runnable_left(ordering_key):
                return outcomes

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A pooled connection in autocommit mode: transactions are explicit, reads are one
        round trip. Whatever transaction is left open on the way out is rolled back."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")

    def _step(self, ordering_key: str, lock_id: int) -> Outcome | _Idle | str:
        with self._connection() as conn:
            with conn.pipeline():
                conn.execute("BEGIN")
                locked_cur = conn.execute(sql.TRY_LOCK, (lock_id,))
                row_cur = conn.execute(sql.NEXT_PENDING, {"lock": lock_id, "key": ordering_key})
                conn.execute("SAVEPOINT handlers")
            locked = locked_cur.fetchone()
            row = row_cur.fetchone()
            if not (locked and locked["locked"]):
                return _BUSY
            if row is None:
                return _Idle()
            if row["wait"] > 0:
                return _Idle(row["id"], float(row["wait"]))
            tx = Tx(conn=conn, settings=self.settings)
            outcome = self._run(conn, tx, row)
        self._after_commit(tx, outcome)
        return outcome

    @property
    def _failure_types(self) -> tuple[type[BaseException], ...]:
        return (Exception, *self.failures)

    def _run(self, conn: Connection, tx: Tx, row: dict[str, Any]) -> Outcome:
        event = Event(
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
        with structlog.contextvars.bound_contextvars(event_id=event.id, event_type=event.type):
            return self._run_bound(conn, tx, event, row["received_at"])

    def _run_bound(self, conn: Connection, tx: Tx, event: Event, received: datetime) -> Outcome:
        handlers = self.registry.handlers_for(event.type)
        started = datetime.now(UTC)
        try:
            for handler in handlers:
                handler(tx, event)
            if conn.info.transaction_status != TransactionStatus.INTRANS:
                raise RuntimeError("a handler committed, rolled back or broke the transaction")
        except self._failure_types as e:
            tb = traceback.format_exc()
            tx.after_commit.clear()
            conn.execute("ROLLBACK TO SAVEPOINT handlers")
            return self._failed(conn, event, received, started, e, tb)
        status = "processed" if handlers else "ignored"
        params = {
            "status": status,
            "id": event.id,
            "key": event.ordering_key,
            "started": started,
            "worker": self.worker_id,
        }
        with conn.pipeline():
            done_cur = conn.execute(sql.FINISH, params)
            conn.execute("COMMIT")
        done = done_cur.fetchone()
        assert done is not None
        if self.metrics is not None:
            self.metrics.observe_finished(
                event.type, status, event.created, received, done["finished_at"]
            )
        ms = round((datetime.now(UTC) - started).total_seconds() * 1000, 1)
        if handlers:
            log.info("event.processed", attempt=event.attempt, ms=ms)
        else:
            log.debug("event.ignored", attempt=event.attempt, ms=ms)
        return Outcome(event.id, status, event.attempt, more=bool(done["more"]))

    def _failed(
        self,
        conn: Connection,
        event: Event,
        received: datetime,
        started: datetime,
        error: BaseException,
        tb: str,
    ) -> Outcome:
        text = error_line(error)
        params: dict[str, Any] = {
            "id": event.id,
            "error": text,
            "started": started,
            "worker": self.worker_id,
        }
        if self.metrics is not None:
            self.metrics.failures.labels(event.type).inc()
        if event.attempt >= self.settings.worker_max_retries:
            with conn.pipeline():
                conn.execute(sql.GIVE_UP, {**params, "traceback": traceback_text(tb)})
                conn.execute("COMMIT")
            if self.metrics is not None:
                now = datetime.now(UTC)
                self.metrics.observe_finished(event.type, "dead", event.created, received, now)
            log.error("event.dead", attempt=event.attempt, error=text)
            return Outcome(event.id, "dead", event.attempt, error=text, more=True)
        delay = backoff_ms(
            event.attempt, self.settings.worker_min_backoff_ms, self.settings.worker_max_backoff_ms
        )
        with conn.pipeline():
            conn.execute(sql.RETRY_LATER, {**params, "delay_s": delay / 1000})
            conn.execute("COMMIT")
        log.warning("event.failed", attempt=event.attempt, retry_in_ms=delay, error=text)
        return Outcome(event.id, "retry", event.attempt, error=text, retry_in_ms=delay)

    def _after_commit(self, tx: Tx, outcome: Outcome) -> None:
        if outcome.status == "retry":
            try:
                self.enqueue(outcome.event_id, outcome.retry_in_ms)
            except Exception as e:
                # The row says when it is due; the sweeper sends it once the lease has passed.
                log.warning(
                    "worker.retry_enqueue_failed", event_id=outcome.event_id, error=error_line(e)
                )
        for callback in tx.after_commit:
            try:
                callback()
            except Exception as e:
                log.error(
                    "worker.after_commit_failed", event_id=outcome.event_id, error=error_line(e)
                )

    def _peek(self, ordering_key: str) -> dict[str, Any] | None:
        with self._connection() as conn:
            return conn.execute(sql.PEEK_PENDING, (ordering_key,)).fetchone()

    def _runnable_left(self, ordering_key: str) -> bool:
        row = self._peek(ordering_key)
        return row is not None and row["wait"] <= 0

    def _hand_over(self, ordering_key: str) -> None:
        """Leave the rest of the key to another worker: a message for its earliest pending event."""
        row = self._peek(ordering_key)
        if row is None:
            return
        try:
            self.enqueue(row["id"], None)
        except Exception as e:
            log.warning("worker.hand_over_failed", event_id=row["id"], error=error_line(e))
