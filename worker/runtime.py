"""What a worker process holds while it runs: settings, broker, the pool and the processor.

The pool opens in a Dramatiq middleware hook when the worker boots (never at import) and closes
after its threads have stopped. On shutdown, holders hand their keys over instead of draining on.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware
from dramatiq.middleware.time_limit import TimeLimitExceeded

from shared.broker import enqueue_events
from shared.db import make_pool
from shared.settings import Settings
from worker.metrics import WorkerMetrics
from worker.processing import Processor

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: Settings
    broker: RedisBroker
    processor: Processor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def enqueue(self, event_id: str, delay_ms: int | None) -> None:
        enqueue_events(self.broker, [event_id], delay_ms=delay_ms)


_current: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _current
    _current = runtime


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("worker runtime not installed: run the worker through worker.entry")
    return _current


def processor() -> Processor:
    proc = current().processor
    if proc is None:
        raise RuntimeError("worker has not booted: no database pool yet")
    return proc


class WorkerResources(Middleware):
    """Opens the pool and builds the Processor when a worker boots; closes them at shutdown."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        settings = self.runtime.settings
        threads = int(getattr(worker, "worker_threads", settings.worker_threads))
        pool = make_pool(settings.database_url, min_size=1, max_size=threads + 2, name="worker")
        # Do not wait: with PostgreSQL down the worker still starts; messages fail and the
        # sweeper sends them again once it is back.
        pool.open(wait=False)
        self.runtime.processor = Processor(
            pool=pool,
            settings=settings,
            enqueue=self.runtime.enqueue,
            metrics=WorkerMetrics(),
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
            failures=(TimeLimitExceeded,),
        )
        log.info("worker.booted", pid=os.getpid(), threads=threads)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.runtime.processor is not None:
            self.runtime.processor.stopping.set()
        log.info("worker.stopping", pid=os.getpid())

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        proc = self.runtime.processor
        if proc is not None:
            proc.pool.close(timeout=5)
        log.info("worker.stopped", pid=os.getpid())
