"""The Dramatiq Redis broker and the one message both sides agree on.

The receiver enqueues without importing the worker's actors: it builds the message by name.
"""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from shared.settings import Settings

QUEUE_NAME = "stripe-events"
PROCESS_ACTOR = "process_event"


def make_broker(settings: Settings, *, middleware: list[object] | None = None) -> RedisBroker:
    """A broker for `settings.redis_url`; redis-py connects lazily, on first use."""
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=settings.redis_url,
        namespace=settings.redis_namespace,
        middleware=middleware,
        socket_connect_timeout=2,
        socket_timeout=5,
    )
    broker.declare_queue(QUEUE_NAME)
    return broker


def event_message(event_id: str, ordering_key: str | None = None) -> dramatiq.Message[object]:
    """The message for one stored event. With its `ordering_key` the worker skips a look-up;
    only send it once every worker runs a version whose actor accepts it (older ones take
    the id alone)."""
    return dramatiq.Message(
        queue_name=QUEUE_NAME,
        actor_name=PROCESS_ACTOR,
        args=(event_id,) if ordering_key is None else (event_id, ordering_key),
        kwargs={},
        options={},
    )


def enqueue_events(
    broker: RedisBroker, event_ids: Iterable[str], *, delay_ms: int | None = None
) -> int:
    """Enqueue one message per id; raises the broker's error if Redis does not take them."""
    count = 0
    for event_id in event_ids:
        broker.enqueue(event_message(event_id), delay=delay_ms)
        count += 1
    return count
