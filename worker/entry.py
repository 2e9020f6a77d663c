"""The Dramatiq entry module: `dramatiq worker.entry` (what `python -m worker` runs).

Importing it builds the settings, logging and the broker (no connection yet: redis-py connects
on first use, the pool opens when the worker boots), sets the broker before any actor is
declared, then imports our actor, the billing mirror and `USER_HANDLERS`, in that order: that
is the order handlers run in.
"""

from __future__ import annotations

import importlib

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from shared.broker import make_broker
from shared.logging import configure_logging
from shared.settings import Settings
from worker import runtime
from worker.metrics import WorkerPrometheus


def setup(settings: Settings) -> RedisBroker:
    configure_logging(settings)
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


broker = setup(Settings.from_env())
