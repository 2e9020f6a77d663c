"""The Dramatiq entry point: `dramatiq worker.entry:boot` (what `python -m worker` runs).

Dramatiq calls `boot` in each worker process. It builds the settings, logging, the broker and
the worker's context (no connection yet: redis-py connects on first use, the pool opens when
the worker boots), declares our actors on that broker, then imports the billing mirror's
handlers and `USER_HANDLERS`, in that order: that is the order handlers run in. Nothing here
runs at import.
"""

from __future__ import annotations

import importlib
import sys
from typing import TextIO

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.compat import StreamablePipe

from shared.broker import make_broker
from shared.logging import configure_logging
from shared.settings import Settings
from worker.actors import declare_actors
from worker.context import WorkerContext, WorkerResources
from worker.metrics import WorkerPrometheus
from worker.mirror.actors import declare_delivery_actor
from worker.mirror.services import mirror_services
from worker.mirror.transports import transport_for
from worker.registry import REGISTRY


def setup(settings: Settings) -> WorkerContext:
    """The worker process's context, its broker set as Dramatiq's, every actor declared."""
    configure_logging(settings, _log_stream())
    broker: RedisBroker = make_broker(settings)  # with Dramatiq's default middleware
    importlib.import_module("worker.mirror.handlers")
    importlib.import_module("worker.mirror.notifications")
    for module in settings.user_handlers:
        importlib.import_module(module)
    ctx = WorkerContext(
        settings=settings,
        broker=broker,
        registry=REGISTRY,
        services=mirror_services(settings, broker),
        transport=transport_for(settings, REGISTRY.transport),
    )
    broker.add_middleware(WorkerPrometheus())
    broker.add_middleware(WorkerResources(ctx))
    dramatiq.set_broker(broker)
    declare_actors(ctx)
    declare_delivery_actor(ctx)
    return ctx


def boot() -> None:
    setup(Settings.from_env())


def _log_stream() -> TextIO | None:
    """In a Dramatiq worker process, stderr is a pipe to the parent, which relays every line
    (a message through the pipe, a write and a flush in the parent's log thread): our lines
    go to the inherited stderr instead, one write each (atomic for lines under PIPE_BUF)."""
    if isinstance(sys.stderr, StreamablePipe):
        return open(2, "w", encoding="utf-8", closefd=False)  # kept for the process lifetime
    return None
