"""The processing engine: every message shape (one event, many events) goes through here.

A message names ordering keys (one, or those of a receiver's batch). The engine runs rounds
over them (see `worker.rounds`): each round locks the keys it can, runs their events in
creation order, finishes them and commits; the next round takes the keys that still have
runnable events, until none has, or the message has run MAX_DRAIN_SECONDS (then it hands the
rest to another message). A key another worker holds is skipped: its holder looks at the key
again after letting go, in the same pipeline as its COMMIT, so no event is left behind.

Failures (rounds are optimistic: a failure rolls the whole round back):
- a handler failed: the attempt is counted for that event (`worker.failures`: a retry after
  backoff, or its dead letter), and the round runs again at once without it (its key stops at
  the failed event; other keys are not delayed);
- PostgreSQL refused the round outside the handlers (finishing UPDATE, a trigger, a deferred
  constraint at COMMIT): the event is unknown, so the keys go again one event per round, where
  such a failure names its event and is counted like a handler's;
- the connection was lost: `DatabaseUnavailable` propagates; rows stay pending and the sweeper
  sends them again. That is never counted against an event.
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

import psycopg
import structlog
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.errors import StripeIngestError, error_line, translate_db_error
from shared.logging import log_ids
from shared.settings import Settings
from worker import sql
from worker.failures import record_failure
from worker.inflight import InFlight, Outcome
from worker.metrics import WorkerMetrics
from worker.mirror.versions import VersionWatch
from worker.policy import key_lock_id
from worker.registry import REGISTRY, Registry, Services
from worker.rounds import (
    HandlerFailed,
    RoundConflict,
    RoundRefused,
    RoundSpec,
    per_key_limit,
    run_round,
)

log = structlog.get_logger("worker.processing")

# Enqueue a message for an event id, after `delay_ms` (None: now). Raises if the broker fails.
Enqueue = Callable[[str, "int | None"], None]

# A message hands its keys over after this long, so one busy key cannot hold a thread forever.
MAX_DRAIN_SECONDS = 30.0
# Rounds in a row that finish nothing before the message gives up (keys busy elsewhere);
# not counted while isolating, where each round is one key's.
MAX_IDLE_ROUNDS = 3
# The dead letter of an event whose every attempt ended with its worker process gone.
WORKER_DIED = (
    "the worker process died while processing this event, in each of its {attempts} "
    "attempts (killed, crashed or out of memory)"
)
# Deadlocked rounds run again; after this many, one event per round.
MAX_CONFLICTS = 3
# A retry message that arrives this early (clock skew) waits instead of being dropped.
EARLY_TOLERANCE_SECONDS = 0.25


@dataclass
class _Run:
    """One message's progress through its keys."""

    # The keys, each with one of its event ids (to hand the key over by).
    known: dict[str, str]
    for_event: str | None = None
    # Claim the first key's earliest event before running it (it may kill its worker).
    claim: bool = False
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_DRAIN_SECONDS)
    pending: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    # One event per round, after PostgreSQL refused a round of several.
    isolate: bool = False
    # A failed attempt to record (on the next connection): the event, its error, traceback.
    failure: tuple[InFlight, str, str] | None = None
    failed_here: set[str] = field(default_factory=set)
    conflicts: int = 0
    idle: int = 0
    finished: bool = False

    def __post_init__(self) -> None:
        self.pending = list(self.known)


@dataclass
class Engine:
    pool: ConnectionPool[Connection]
    settings: Settings
    enqueue: Enqueue
    registry: Registry = REGISTRY
    services: Services = field(default_factory=Services)
    metrics: WorkerMetrics | None = None
    worker_id: str = "worker"
    # Exceptions besides Exception that count as a handler failure (Dramatiq's time limit).
    failures: tuple[type[BaseException], ...] = ()
    # Set when the worker shuts down: messages hand their keys over instead of draining on.
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._claiming = threading.Lock()
        self._versions = VersionWatch(self.metrics.unknown_api_version if self.metrics else None)
        self.spec = RoundSpec(
            self.settings, self.registry, self.services, self.worker_id, self.failures
        )

    def handle(
        self, event_id: str, ordering_key: str | None = None, *, claim: bool = False
    ) -> list[Outcome]:
        """A message naming one event: no-op unless it is pending; else process its key.
        With the key known (newer messages carry it) there is no look-up. With `claim` (the
        sweeper's messages), the key's earliest event is a suspect: see `_claim`."""
        if ordering_key is None:
            with self._connection() as conn:
                try:
                    head = conn.execute(sql.EVENT_HEAD, (event_id,)).fetchone()
                except psycopg.Error as e:
                    raise translate_db_error(e, conn) from e
            if head is None:
                log.warning("worker.event_unknown", event_id=event_id)
                return []
            if head["status"] != "pending":
                return []
            ordering_key = head["ordering_key"]
        return self._process(_Run({ordering_key: event_id}, for_event=event_id, claim=claim))

    def handle_many(self, events: Sequence[tuple[str, str]]) -> list[Outcome]:
        """A message naming many events ((id, ordering key) pairs): their keys together."""
        known: dict[str, str] = {}
        for event_id, key in events:
            known.setdefault(key, event_id)
        return self._process(_Run(known))

    def drain(self, ordering_key: str) -> list[Outcome]:
        """Finish what is runnable for the key, in creation order."""
        return self._process(_Run({ordering_key: ""}))

    def _process(self, run: _Run) -> list[Outcome]:
        # A failed round aborted its pipeline, which can leave psycopg's cache of prepared
        # statements out of step with the server's: its connection is discarded (the pool
        # opens another) and the rest of the message goes on with a fresh one.
        while not run.finished:
            with self._connection() as conn:
                self._rounds(conn, run)
        return run.outcomes

    def _rounds(self, conn: Connection, run: _Run) -> None:
        """Run rounds until the message is done, or one fails (then close the connection)."""
        if run.failure is not None:
            inflight, error, tb = run.failure
            run.failure = None
            run.outcomes += self._failed(conn, inflight, error, tb)
            run.failed_here.add(inflight.id)
        while run.pending:
            # One claimed suspect at a time per process: if it kills the process, no other
            # claimed event dies with it and is blamed.
            with self._claiming if run.claim else contextlib.nullcontext():
                claimed = self._claim(conn, run) if run.claim else frozenset()
                alone = run.isolate or bool(claimed)
                keys = run.pending[:1] if alone else run.pending
                per_key = 1 if alone else per_key_limit(len(keys))
                try:
                    result = run_round(
                        conn, self.spec, keys, per_key, claimed, frozenset(run.failed_here)
                    )
                except RoundConflict as c:
                    # Deadlocks are nobody's fault: the round runs again, and after a few
                    # collisions one event per round, which holds fewer row locks at once.
                    self._discard(conn)
                    run.conflicts += 1
                    log.info("worker.round_conflict", conflicts=run.conflicts, error=str(c))
                    if run.conflicts >= 4 * MAX_CONFLICTS:
                        # Still colliding one event at a time: leave the keys to the sweeper.
                        raise StripeIngestError("rounds kept deadlocking") from c
                    if run.conflicts >= MAX_CONFLICTS:
                        run.isolate = True
                    return
                except HandlerFailed as f:
                    run.failure = (f.inflight, error_line(f.error), f.traceback)
                    self._discard(conn)
                    return
                except RoundRefused as r:
                    self._discard(conn)
                    if len(r.events) == 1:
                        tb = "".join(traceback.format_exception(r.error))
                        run.failure = (r.events[0], error_line(r.error), tb)
                        return
                    if run.isolate or not r.events:
                        raise translate_db_error(r.error) from r
                    log.info("worker.round_isolating", events=len(r.events), error=str(r))
                    run.isolate = True
                    return
            run.outcomes += self._committed(result.done)
            # One key per round when isolating: a round that finished nothing for its key says
            # nothing of the keys not tried yet (each such key leaves `pending` anyway).
            run.idle = 0 if result.done or run.isolate else run.idle + 1
            runnable = []
            for key in keys:
                head = result.heads.get(key)
                if head is None:
                    continue  # nothing pending, or another worker holds it
                run.known[key], wait = head
                if head[0] in run.failed_here:
                    # Failed in this message: its retry's message takes the key when it is
                    # due (also if that is already, on a slow round), so it runs once a retry.
                    continue
                if wait <= 0:
                    runnable.append(key)
                elif wait > EARLY_TOLERANCE_SECONDS:
                    continue  # its retry's message comes when it is due
                elif head[0] == run.for_event:
                    time.sleep(wait + 0.01)  # its own retry, a little early (clock skew)
                    runnable.append(key)
                else:
                    # Another event's retry, due any moment: its message may have come while
                    # this round held the key (Dramatiq's eta has millisecond resolution) and
                    # been turned away. One more message, due with it, so it is never left.
                    self.hand_over(head[0], delay_ms=int(wait * 1000) + 1)
            rest = [k for k in run.pending if k not in keys] if run.isolate else []
            run.pending = runnable + rest
            if run.idle >= MAX_IDLE_ROUNDS:
                break
            if run.pending and (self.stopping.is_set() or time.monotonic() > run.deadline):
                for key in run.pending:
                    if run.known[key]:
                        self.hand_over(run.known[key])
                break
        run.finished = True

    def _claim(self, conn: Connection, run: _Run) -> frozenset[str]:
        """Count the attempt of the first key's earliest event and commit, before it runs.

        The sweeper re-sends events whose message was lost, or whose worker died while running
        them, which no rollback records: a handler that kills its process (a crash, an
        out-of-memory kill) would be sent again forever. Claimed, such an event uses up its
        attempts one per sweep; once it has none left it is dead, and its key goes on."""
        run.claim = False
        key = run.pending[0]
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                cur = conn.execute(sql.CLAIM_HEAD, {"lock": key_lock_id(key), "key": key})
            row = cur.fetchone()
            assert row is not None
            if not row["locked"] or row["id"] is None:
                conn.execute("ROLLBACK")
                return frozenset()
            if row["attempts"] < self.settings.worker_max_retries:
                with conn.pipeline():
                    counted = conn.execute(
                        sql.COUNT_RUNNING, {"id": row["id"], "worker": self.worker_id}
                    )
                    conn.execute("COMMIT")
                return frozenset([row["id"]]) if counted.fetchone() else frozenset()
            conn.execute("ROLLBACK")
        except psycopg.Error as e:
            raise translate_db_error(e, conn) from e
        inflight = InFlight.from_row(row, (conn, self.settings, self.services), counted=True)
        error = WORKER_DIED.format(attempts=row["attempts"])
        if row["last_error"]:
            error += "; last error: " + row["last_error"]
        run.outcomes += self._failed(conn, inflight, error, "", worker_died=True)
        return frozenset()

    @staticmethod
    def _discard(conn: Connection) -> None:
        """Roll back (which lets go of the keys at once: a closed socket's backend may hold
        them a little longer) and close; the pool replaces the connection."""
        with contextlib.suppress(psycopg.Error):
            conn.execute("ROLLBACK")
        conn.close()

    def _failed(
        self, conn: Connection, inflight: InFlight, error: str, tb: str, worker_died: bool = False
    ) -> list[Outcome]:
        outcome = record_failure(conn, self.spec, inflight, error, tb, worker_died=worker_died)
        if outcome is None:
            # Another message holds the key: it runs the event again, and this message makes
            # sure the key is looked at once more if that holder had already read past it.
            self.hand_over(inflight.id)
            return []
        event = inflight.event
        if self.metrics is not None:
            self.metrics.failures.labels(event.type).inc()
            if outcome.status == "dead":
                self.metrics.observe_finished(
                    event.type,
                    "dead",
                    event.created,
                    inflight.received_at,
                    datetime.now(UTC),
                    inflight.enqueued_at,
                )
        if outcome.status == "retry":
            try:
                self.enqueue(event.id, outcome.retry_in_ms)
            except Exception as e:
                # The row says when it is due; the sweeper sends it once the lease has passed.
                log.warning("worker.retry_enqueue_failed", event_id=event.id, error=error_line(e))
        return [outcome]

    def _committed(self, done: list[InFlight]) -> list[Outcome]:
        """After a round's commit: metrics, logs, after-commit callbacks and deferred items."""
        if not done:
            return []
        debug = log.is_enabled_for(logging.DEBUG)
        for d in done:
            if self.metrics is not None and d.finished_at is not None:
                self.metrics.observe_finished(
                    d.event.type,
                    d.status,
                    d.event.created,
                    d.received_at,
                    d.finished_at,
                    d.enqueued_at,
                )
            if d.status == "processed":
                self._versions.saw(d.event.api_version)
            if debug:
                ms = round((datetime.now(UTC) - d.started).total_seconds() * 1000, 1)
                name = "event.processed" if d.status == "processed" else "event.ignored"
                log.debug(name, event_id=d.id, event_type=d.event.type, ms=ms)
            for callback in d.tx.after_commit:
                try:
                    callback()
                except Exception as e:
                    log.error("worker.after_commit_failed", event_id=d.id, error=error_line(e))
        log_ids(log, "events.finished", [d.id for d in done])
        groups: dict[Callable[[list[object]], None], list[object]] = {}
        for d in done:
            for fn, item in d.tx.deferred:
                groups.setdefault(fn, []).append(item)
        for fn, items in groups.items():
            try:
                fn(items)
            except Exception as e:
                log.error("worker.after_commit_failed", count=len(items), error=error_line(e))
        return [d.outcome() for d in done]

    def hand_over(self, event_id: str, delay_ms: int | None = None) -> None:
        """Leave the rest of a key to another message (due after `delay_ms`)."""
        try:
            self.enqueue(event_id, delay_ms)
        except Exception as e:
            log.warning("worker.hand_over_failed", event_id=event_id, error=error_line(e))

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
