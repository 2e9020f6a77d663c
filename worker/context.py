"""What a worker process holds while it runs, built once when the process starts.

The pool opens in a Dramatiq middleware hook when the worker boots (never at import) and closes
after its threads have stopped. On shutdown, messages hand their keys over instead of draining.
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
from psycopg_pool import ConnectionPool

from shared.broker import enqueue_events
from shared.db import Connection, make_pool
from shared.settings import Settings
from worker.engine import Engine
from worker.metrics import WorkerMetrics
from worker.registry import Registry, Services

log = structlog.get_logger(__name__)


@dataclass
class WorkerContext:
    settings: Settings
    broker: RedisBroker
    registry: Registry
    services: Services
    # How notifications leave (worker.mirror.transports): built from the settings.
    transport: Any
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    pool: ConnectionPool[Connection] | None = None
    engine: Engine | None = None

    def enqueue(self, event_id: str, delay_ms: int | None) -> None:
        enqueue_events(self.broker, [event_id], delay_ms=delay_ms)

    def booted(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("worker has not booted: no database pool yet")
        return self.engine


class WorkerResources(Middleware):
    """Opens the pool and builds the engine when a worker boots; closes them at shutdown."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        ctx = self.context
        threads = int(getattr(worker, "worker_threads", ctx.settings.worker_threads))
        ctx.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        ctx.pool = make_pool(
            ctx.settings.database_url, min_size=1, max_size=threads + 2, name="worker"
        )
        # Do not wait: with PostgreSQL down the worker still starts; messages fail and the
        # sweeper sends them again once it is back.
        ctx.pool.open(wait=False)
        ctx.engine = Engine(
            pool=ctx.pool,
            settings=ctx.settings,
            enqueue=ctx.enqueue,
            registry=ctx.registry,
            services=ctx.services,
            metrics=WorkerMetrics(),
            worker_id=ctx.worker_id,
            failures=(TimeLimitExceeded,),
        )
        log.info("worker.booted", pid=os.getpid(), threads=threads)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.context.engine is not None:
            self.context.engine.stopping.set()
        log.info("worker.stopping", pid=os.getpid())

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.context.pool is not None:
            self.context.pool.close(timeout=5)
        log.info("worker.stopped", pid=os.getpid())
