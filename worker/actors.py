"""The `process_event` and `process_events` actors: Dramatiq delivers event ids (one, or many
with their ordering keys), the Processor does the rest.

Retries are kept in PostgreSQL (the row is the truth), so Dramatiq's own are off. An exception
escaping here means the database could not be reached: the row stays `pending` and the sweeper
sends the event again after its lease.
"""

from __future__ import annotations

import dramatiq
import structlog

from shared.broker import PROCESS_ACTOR, PROCESS_MANY_ACTOR, QUEUE_NAME
from worker import runtime

log = structlog.get_logger(__name__)


@dramatiq.actor(actor_name=PROCESS_ACTOR, queue_name=QUEUE_NAME, max_retries=0)
def process_event(event_id: str, ordering_key: str | None = None) -> None:
    # Messages carry the id alone, or the id and its ordering key (no look-up then).
    runtime.processor().handle(event_id, ordering_key)


@dramatiq.actor(actor_name=PROCESS_MANY_ACTOR, queue_name=QUEUE_NAME, max_retries=0)
def process_events(events: list[list[str]]) -> None:
    # [[id, ordering key], ...]: what the receiver committed in one batch.
    runtime.processor().handle_many([(str(e[0]), str(e[1])) for e in events])
