"""The Dramatiq entry module: `dramatiq worker.entry` (what `python -m worker` runs).

Importing it builds the settings, logging and the broker (no connection yet: redis-py connects
on first use, the pool opens when the worker boots), sets the broker before any actor is
declared, then imports our actor, the billing mirror and `USER_HANDLERS`, in that order: that
is the order handlers run in.
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
from worker import runtime
from worker.metrics import WorkerPrometheus


def setup(settings: Settings) -> RedisBroker:
    configure_logging(settings, _log_stream())
    broker = make_broker(settings)  # with Dramatiq's default middleware
    rt = runtime.Runtime(settings=settings, broker=broker)
    broker.add_middleware(WorkerPrometheus())
    broker.add_middleware(runtime.WorkerResources(rt))
    runtime.install(rt)
    dramatiq.set_broker(broker)
    importlib.import_module("worker.actors")
    mirror = importlib.import_module("worker.mirror")
    # The mirror's actors take our Settings instead of reading the environment again.
    use_settings = getattr(getattr(mirror, "actors", None), "use_settings", None)
    if callable(use_settings):
        use_settings(settings)
    for module in settings.user_handlers:
        importlib.import_module(module)
    return broker


def _log_stream() -> TextIO | None:
    """In a Dramatiq worker process, stderr is a pipe to the parent, which relays every line
    (a message through the pipe, a write and a flush in the parent's log thread): our lines
    go to the inherited stderr instead, one write each (atomic for lines under PIPE_BUF)."""
    if isinstance(sys.stderr, StreamablePipe):
        return open(2, "w", encoding="utf-8", closefd=False)  # kept for the process lifetime
    return None


broker = setup(Settings.from_env())
