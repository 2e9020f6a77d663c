"""The Dramatiq Redis broker and the one message both sides agree on.

The receiver enqueues without importing the worker's actors: it builds the message by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from shared.settings import Settings

QUEUE_NAME = "stripe-events"
# One event: its id, or its id and ordering key (retries, the sweeper, replays).
PROCESS_ACTOR = "process_event"
# Many events: one argument, a list of [id, ordering key] pairs (the receiver, one per batch).
PROCESS_MANY_ACTOR = "process_events"
# Events named by one `process_events` message: a worker processes them together, many keys per
# transaction (the receiver's and the sweeper's messages).
EVENTS_PER_MESSAGE = 64


def queue_key(namespace: str, queue: str = QUEUE_NAME) -> str:
    """Dramatiq's Redis list of a queue's messages that no worker has taken yet (their bodies
    are in the hash `<key>.msgs` until acknowledged; a delay queue is `<queue>.DQ`)."""
    return f"{namespace}:{queue}"


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


def suspect_message(event_id: str, ordering_key: str) -> dramatiq.Message[object]:
    """The sweeper's message for a stranded event: claim it before it runs (its worker may
    have died in it). Workers before 0.3.0 do not take the `claim` argument."""
    return dramatiq.Message(
        queue_name=QUEUE_NAME,
        actor_name=PROCESS_ACTOR,
        args=(event_id, ordering_key),
        kwargs={"claim": True},
        options={},
    )


def events_message(
    events: Sequence[tuple[str, str]],
    *,
    options: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> dramatiq.Message[object]:
    """The message for several stored events, each with its ordering key (`options` and
    `message_id` for senders that write the broker's keys themselves)."""
    message: dramatiq.Message[object] = dramatiq.Message(
        queue_name=QUEUE_NAME,
        actor_name=PROCESS_MANY_ACTOR,
        args=([[event_id, key] for event_id, key in events],),
        kwargs={},
        options=options or {},
    )
    return message if message_id is None else dataclasses.replace(message, message_id=message_id)


def message_event_ids(actor_name: str, args: Sequence[Any]) -> list[str]:
    """The event ids a message of either actor names (for tools and tests that read queues)."""
    if actor_name == PROCESS_MANY_ACTOR:
        return [str(pair[0]) for pair in args[0]]
    return [str(args[0])]


def enqueue_events(
    broker: RedisBroker, event_ids: Iterable[str], *, delay_ms: int | None = None
) -> int:
    """Enqueue one message per id; raises the broker's error if Redis does not take them."""
    count = 0
    for event_id in event_ids:
        broker.enqueue(event_message(event_id), delay=delay_ms)
        count += 1
    return count
