"""`python -m worker.sweeper` (Procfile `sweeper`): send stranded pending events again.

Every SWEEPER_INTERVAL_SECONDS it claims pending events that are due (no retry backoff left) and
were last handed to the broker more than SWEEPER_LEASE_SECONDS ago: the enqueue failed at
intake, Redis lost the message, or the worker that held it was killed (Dramatiq itself would
re-deliver that only after its heartbeat timeout). One message per ordering key is enough: the
worker that takes it drains the whole key, so a pass claims only each stranded key's earliest
pending event (its head; see `worker.sql.CLAIM_STRANDED`). Each key is sent as a suspect: the
worker counts its first event's attempt before running it, so one that kills its worker runs out
of attempts and is dead-lettered instead of crash-looping (see `worker.engine`). But a claimed
batch of at least BACKLOG_KEYS keys is a backlog (Redis lost its messages, or the workers were
down with it), not what a killed worker group held: there a key re-sent for the first time goes
in an ordinary message naming up to EVENTS_PER_MESSAGE keys, as the receiver's do, so the
backlog drains at the pipeline's pace instead of one suspect at a time per process; only a key
stranded again after that is a suspect (a killer inside a backlog costs one kill more before it
is isolated). The claim bumps `enqueued_at` and `sweeps` with `FOR UPDATE SKIP LOCKED`, so
several sweepers never claim the same rows. While the broker's queue already holds
QUEUE_BUSY_MESSAGES messages no worker has taken, a pass claims nothing: the workers are behind,
not the messages lost, and re-sending the backlog each lease would only bury it under copies
(and make its keys suspects). If the broker refuses, the claim rolls back and the next pass
tries again. Then it runs the registry's sweep hooks.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import dramatiq
import psycopg
import structlog
from dramatiq.brokers.redis import RedisBroker

from shared.broker import (
    EVENTS_PER_MESSAGE,
    events_message,
    make_broker,
    queue_key,
    suspect_message,
)
from shared.db import Connection, DatabaseUnavailable, connect
from shared.errors import error_line
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError
from worker import sql
from worker.metrics import SweeperMetrics
from worker.registry import REGISTRY, Registry

log = structlog.get_logger(__name__)

CLAIM_BATCH = 1000
# A pass claims at most this many batches (100,000 keys): enough to keep a backlog's workers
# busy until the next pass; the rest waits one interval.
MAX_BATCHES_PER_PASS = 100


def heads(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The claimed heads (one per key: the claim takes only each key's earliest pending event)
    with their keys, in creation order (RETURNING keeps no order)."""
    ordered = sorted(rows, key=lambda r: (r["created"], r["received_at"], r["id"]))
    return [(row["id"], row["ordering_key"]) for row in ordered]


# Messages waiting in the queue (taken by no worker yet) from which a pass claims nothing.
QUEUE_BUSY_MESSAGES = 1000
# Keys in one claimed batch from which it is a backlog (see above): a killed worker group
# strands what its threads held, a few messages' keys.
BACKLOG_KEYS = 256


def split_suspects(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Each key's head: those to send in ordinary messages (a backlog's keys re-sent for the
    first time) and the suspects (`sweeps` counts this claim too)."""
    claimed = heads(rows)
    if len(claimed) < BACKLOG_KEYS:
        return [], claimed
    again = {row["ordering_key"] for row in rows if row["sweeps"] > 1}
    return [h for h in claimed if h[1] not in again], [h for h in claimed if h[1] in again]


class Sweeper:
    def __init__(
        self,
        settings: Settings,
        broker: RedisBroker,
        metrics: SweeperMetrics | None = None,
        registry: Registry = REGISTRY,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.metrics = metrics
        self.registry = registry
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings.database_url)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def sweep_once(self) -> int:
        """Claim and re-send stranded keys; returns how many were claimed (one head each)."""
        claimed = 0
        for _ in range(MAX_BATCHES_PER_PASS):
            waiting = self.broker.client.llen(queue_key(self.settings.redis_namespace))
            if waiting >= QUEUE_BUSY_MESSAGES:
                log.info("sweeper.queue_busy", waiting=waiting, claimed=claimed)
                break
            conn = self._connection()
            try:
                with conn.transaction():
                    rows = conn.execute(
                        sql.CLAIM_STRANDED,
                        {"lease_s": self.settings.sweeper_lease_seconds, "limit": CLAIM_BATCH},
                    ).fetchall()
                    first, suspects = split_suspects(rows)
                    # Inside the transaction: if Redis refuses, nothing is marked as sent.
                    for i in range(0, len(first), EVENTS_PER_MESSAGE):
                        self.broker.enqueue(events_message(first[i : i + EVENTS_PER_MESSAGE]))
                    for event_id, key in suspects:
                        self.broker.enqueue(suspect_message(event_id, key))
                    messages = -(-len(first) // EVENTS_PER_MESSAGE) + len(suspects)
            except psycopg.Error as e:
                self.close()
                raise DatabaseUnavailable(error_line(e)) from e
            if rows:
                claimed += len(rows)
                if self.metrics is not None:
                    self.metrics.requeued.inc(len(rows))
                log.info(
                    "sweeper.requeued", count=len(rows), messages=messages, suspects=len(suspects)
                )
            if len(rows) < CLAIM_BATCH:
                break
        return claimed

    def run_hooks(self) -> None:
        for hook in list(self.registry.sweep_hooks):
            try:
                hook(self.settings, self.broker)
            except Exception as e:
                log.error(
                    "sweeper.hook_failed",
                    hook=getattr(hook, "__qualname__", repr(hook)),
                    error=error_line(e),
                )

    def run_pass(self) -> int:
        """One pass that never raises: outages are logged and the next pass tries again."""
        claimed = 0
        outcome = "ok"
        try:
            claimed = self.sweep_once()
        except DatabaseUnavailable as e:
            outcome = "failed"
            log.warning("sweeper.database_unavailable", error=str(e))
        except Exception as e:
            outcome = "failed"
            log.warning("sweeper.enqueue_failed", error=error_line(e))
        if self.metrics is not None:
            self.metrics.passes.labels(outcome).inc()
        self.run_hooks()
        return claimed

    def run(self, stop: threading.Event) -> None:
        log.info(
            "sweeper.started",
            interval_s=self.settings.sweeper_interval_seconds,
            lease_s=self.settings.sweeper_lease_seconds,
        )
        while not stop.is_set():
            self.run_pass()
            stop.wait(self.settings.sweeper_interval_seconds)
        log.info("sweeper.stopped")


def load_hooks(settings: Settings, broker: RedisBroker) -> None:
    """Import the modules whose sweep hooks we run (they may declare actors: set the broker)."""
    dramatiq.set_broker(broker)
    importlib.import_module("worker.mirror.notifications")
    for module in settings.user_handlers:
        importlib.import_module(module)


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        sys.stderr.write(f"sweeper: {e}\n")
        return 2
    configure_logging(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker = make_broker(settings)
    load_hooks(settings, broker)
    metrics = SweeperMetrics()
    if settings.sweeper_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(
            settings.sweeper_metrics_port, addr=settings.metrics_host, registry=metrics.registry
        )
    sweeper = Sweeper(settings, broker, metrics)
    try:
        sweeper.run(stop)
    finally:
        sweeper.close()
        broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
