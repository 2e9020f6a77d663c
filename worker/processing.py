"""Process stored events: one key at a time, in creation order, effects exactly once.

A message names an event; its worker becomes the *holder* of the event's ordering key by taking
`pg_try_advisory_xact_lock(key)` inside each transaction. The holder drains the key: per
transaction it locks, takes the earliest pending event (`created, received_at, id`), runs its
handlers in a savepoint, and writes `status`, `attempts`, `processed_at` and `process_seq` with
them; while the key has more, the same transaction takes the next one (at most MAX_BATCH, for at
most MAX_BATCH_SECONDS), each event in its own savepoint. If the lock is busy the message returns
at once: the holder re-checks the key after letting go (the check rides in the COMMIT's
pipeline), so a message that lost the race is never lost. One pooled connection per message.

A failing handler rolls back to its savepoint; the failure (attempt, error, backoff) is written in
the same transaction, still under the key's lock, and a delayed message is sent after commit.
While an event waits for its retry, the later events of its key wait too (ordering). After
`WORKER_MAX_RETRIES` failed attempts it becomes `dead` with its `dead_letters` row and the key
moves on. Database or broker outages raise: the rows stay `pending` and the sweeper re-sends them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.settings import Settings
from worker import batches, sql
from worker.metrics import WorkerMetrics
from worker.outcomes import Outcome, event_from_row, log_committed, run_deferred
from worker.policy import backoff_ms, error_line, key_lock_id, traceback_text
from worker.registry import REGISTRY, Event, Handler, Registry, Tx

log = structlog.get_logger(__name__)

# Enqueue a message for an event id, after `delay_ms` (None: now). Raises if the broker fails.
Enqueue = Callable[[str, "int | None"], None]

# A holder hands its key over after this long, so one busy key cannot hold a thread forever.
MAX_DRAIN_SECONDS = 30.0
# Events of one key per transaction, each in its own savepoint (well under PostgreSQL's 64 cached
# subtransactions), and for at most this long: the mirror's row locks are held until commit.
MAX_BATCH = 8
MAX_BATCH_SECONDS = 0.1
# A retry message that arrives this early (clock skew) waits instead of being dropped.
EARLY_TOLERANCE_SECONDS = 0.25


@dataclass(frozen=True)
class _Done:
    tx: Tx
    event: Event
    outcome: Outcome
    received: datetime
    finished: datetime


@dataclass
class _Round:
    """One transaction under the key's lock: what it finished, and the key's earliest pending
    event as seen after the lock was let go (None: nothing pending)."""

    outcomes: list[Outcome] = field(default_factory=list)
    head: dict[str, Any] | None = None


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

    def handle(self, event_id: str, ordering_key: str | None = None) -> list[Outcome]:
        """Handle one message: no-op unless the event is pending; else drain its key.

        With the key known (newer messages carry it) there is no look-up: a message for a
        finished event then finds its key idle, or drains what is pending there."""
        with self._connection() as conn:
            if ordering_key is None:
                head = conn.execute(sql.EVENT_HEAD, (event_id,)).fetchone()
                if head is None:
                    log.warning("worker.event_unknown", event_id=event_id)
                    return []
                if head["status"] != "pending":
                    return []
                ordering_key = head["ordering_key"]
            return self._drain(conn, ordering_key, event_id)

    def handle_many(self, events: Sequence[tuple[str, str]]) -> list[Outcome]:
        """Handle a message naming many events ((id, ordering key) pairs): their keys are
        processed together, many per transaction (see `worker.batches`)."""
        return batches.handle_many(self, events)

    def drain(self, ordering_key: str, for_event: str | None = None) -> list[Outcome]:
        """Finish what is runnable for the key, in creation order, while we hold it."""
        with self._connection() as conn:
            return self._drain(conn, ordering_key, for_event)

    def _drain(self, conn: Connection, ordering_key: str, for_event: str | None) -> list[Outcome]:
        lock_id = key_lock_id(ordering_key)
        deadline = time.monotonic() + MAX_DRAIN_SECONDS
        outcomes: list[Outcome] = []
        idle_rounds = 0
        while True:
            round_ = self._round(conn, ordering_key, lock_id, deadline)
            if round_ == _BUSY:
                return outcomes
            assert isinstance(round_, _Round)
            outcomes.extend(round_.outcomes)
            idle_rounds = 0 if round_.outcomes else idle_rounds + 1
            head = round_.head  # read after the key was let go: a lost try-lock relies on it
            if head is None or idle_rounds > 3:
                return outcomes
            if any(o.event_id == head["id"] and o.status == "retry" for o in outcomes):
                return outcomes  # failed here: its delayed message is on the way
            if head["wait"] <= 0:
                if self.stopping.is_set() or time.monotonic() > deadline:
                    self.hand_over(head["id"])
                    return outcomes
                continue
            # This message's own retry arrived a little early (clock skew): wait for it.
            if head["id"] == for_event and head["wait"] <= EARLY_TOLERANCE_SECONDS:
                time.sleep(head["wait"] + 0.01)
                continue
            return outcomes

    # What `worker.batches` uses of the processor.
    drain_seconds = MAX_DRAIN_SECONDS

    def drain_key(self, conn: Connection, ordering_key: str) -> list[Outcome]:
        return self._drain(conn, ordering_key, None)

    def batch_committed(
        self, done: list[tuple[Tx, Event, str, datetime, datetime, datetime]]
    ) -> list[Outcome]:
        """After a round's commit: metrics, logs and after-commit callbacks of its events."""
        outcomes = []
        for tx, event, status, started, received, finished in done:
            outcome = Outcome(event.id, status, event.attempt)
            self._log_finished(event, outcome, started)
            if self.metrics is not None:
                self.metrics.observe_finished(event.type, status, event.created, received, finished)
            self._after_commit(tx, outcome)
            outcomes.append(outcome)
        log_committed([o.event_id for o in outcomes])
        run_deferred([tx for tx, *_ in done])
        return outcomes

    def connection(self) -> contextlib.AbstractContextManager[Connection]:
        return self._connection()

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

    def _round(
        self, conn: Connection, ordering_key: str, lock_id: int, deadline: float
    ) -> _Round | str:
        """Lock the key and run its events in creation order, each in its own savepoint, up to
        MAX_BATCH per transaction; every event's effects commit with its status."""
        with conn.pipeline():
            conn.execute("BEGIN")
            row_cur = conn.execute(
                sql.LOCK_NEXT, {"lock": lock_id, "key": ordering_key, "done": None}
            )
            conn.execute("SAVEPOINT handlers")
        first = row_cur.fetchone()
        assert first is not None
        if not first["locked"]:
            conn.execute("ROLLBACK")
            return _BUSY
        row = first if first["id"] is not None else None
        done: list[_Done] = []
        batch_end = time.monotonic() + MAX_BATCH_SECONDS
        while row is not None and row["wait"] <= 0:
            tx = Tx(conn=conn, settings=self.settings)
            event = event_from_row(row)
            with structlog.contextvars.bound_contextvars(event_id=event.id, event_type=event.type):
                started = datetime.now(UTC)
                handlers = self.registry.handlers_for(event.type)
                failure = self.run_handlers(conn, tx, event, handlers)
                if failure is not None:
                    conn.execute("ROLLBACK TO SAVEPOINT handlers")
                    tx.after_commit.clear()
                    tx.deferred.clear()
                    outcome, head = self._failed(conn, event, row, started, *failure)
                    self._committed(done, head)
                    self._after_commit(tx, outcome)
                    return _Round([d.outcome for d in done] + [outcome], head)
                status = "processed" if handlers else "ignored"
                params = {"status": status, "done": event.id, "started": started}
                params.update(key=ordering_key, worker=self.worker_id)
                more = (
                    row["more"]
                    and len(done) + 1 < MAX_BATCH
                    and time.monotonic() < min(batch_end, deadline)
                    and not self.stopping.is_set()
                )
                with conn.pipeline():
                    if more:
                        # Savepoints nest (at most MAX_BATCH): a rollback undoes one event.
                        finish_cur = conn.execute(sql.FINISH_NEXT, params)
                        conn.execute("SAVEPOINT handlers")
                    else:
                        finish_cur = conn.execute(sql.FINISH, params)
                        conn.execute("COMMIT")
                        head_cur = conn.execute(sql.PEEK_PENDING, (ordering_key,))
                finished = finish_cur.fetchone()
                assert finished is not None
                outcome = Outcome(event.id, status, event.attempt)
                done.append(_Done(tx, event, outcome, row["received_at"], finished["finished_at"]))
                self._log_finished(event, outcome, started)
            if not more:
                return self._committed(done, head_cur.fetchone())
            row = finished if finished["id"] is not None else None
        # Nothing runnable (left) under the lock: commit what is done, then look again.
        with conn.pipeline():
            conn.execute("COMMIT")
            head_cur = conn.execute(sql.PEEK_PENDING, (ordering_key,))
        return self._committed(done, head_cur.fetchone())

    def _committed(self, done: list[_Done], head: dict[str, Any] | None) -> _Round:
        log_committed([d.event.id for d in done])
        for d in done:
            if self.metrics is not None:
                self.metrics.observe_finished(
                    d.event.type, d.outcome.status, d.event.created, d.received, d.finished
                )
            self._after_commit(d.tx, d.outcome)
        run_deferred([d.tx for d in done])
        return _Round([d.outcome for d in done], head)

    @property
    def failure_types(self) -> tuple[type[BaseException], ...]:
        return (Exception, *self.failures)

    def run_handlers(
        self, conn: Connection, tx: Tx, event: Event, handlers: list[Handler]
    ) -> tuple[BaseException, str] | None:
        """Run the event's handlers in the open savepoint; the failure and its traceback."""
        try:
            for handler in handlers:
                handler(tx, event)
            if conn.info.transaction_status != TransactionStatus.INTRANS:
                raise RuntimeError("a handler committed, rolled back or broke the transaction")
        except self.failure_types as e:
            return e, traceback.format_exc()
        return None

    def _log_finished(self, event: Event, outcome: Outcome, started: datetime) -> None:
        # Per event at debug: at thousands of events a second, a line each cost the workers about
        # half of their CPU (with Dramatiq's relay). Each transaction logs `events.finished`.
        if log.is_enabled_for(logging.DEBUG):
            ms = round((datetime.now(UTC) - started).total_seconds() * 1000, 1)
            log.debug(
                "event.processed" if outcome.status == "processed" else "event.ignored",
                event_id=event.id,
                event_type=event.type,
                attempt=event.attempt,
                ms=ms,
            )

    def _failed(
        self,
        conn: Connection,
        event: Event,
        row: dict[str, Any],
        started: datetime,
        error: BaseException,
        tb: str,
    ) -> tuple[Outcome, dict[str, Any] | None]:
        """Record the failure under the key's lock and commit: a retry later, or dead."""
        text = error_line(error)
        params: dict[str, Any] = {
            "id": event.id,
            "error": text,
            "started": started,
            "worker": self.worker_id,
        }
        if self.metrics is not None:
            self.metrics.failures.labels(event.type).inc()
        dead = event.attempt >= self.settings.worker_max_retries
        delay = backoff_ms(
            event.attempt, self.settings.worker_min_backoff_ms, self.settings.worker_max_backoff_ms
        )
        with conn.pipeline():
            if dead:
                conn.execute(sql.GIVE_UP, {**params, "traceback": traceback_text(tb)})
            else:
                conn.execute(sql.RETRY_LATER, {**params, "delay_s": delay / 1000})
            conn.execute("COMMIT")
            head_cur = conn.execute(sql.PEEK_PENDING, (event.ordering_key,))
        head = head_cur.fetchone()
        if dead:
            if self.metrics is not None:
                now = datetime.now(UTC)
                self.metrics.observe_finished(
                    event.type, "dead", event.created, row["received_at"], now
                )
            log.error("event.dead", attempt=event.attempt, error=text)
            return Outcome(event.id, "dead", event.attempt, error=text), head
        log.warning("event.failed", attempt=event.attempt, retry_in_ms=delay, error=text)
        return Outcome(event.id, "retry", event.attempt, error=text, retry_in_ms=delay), head

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

    def hand_over(self, event_id: str) -> None:
        """Leave the rest of the key to another worker: a message for its earliest pending event."""
        try:
            self.enqueue(event_id, None)
        except Exception as e:
            log.warning("worker.hand_over_failed", event_id=event_id, error=error_line(e))
