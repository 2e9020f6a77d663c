"""The `process_event` and `process_events` actors: Dramatiq delivers event ids (one, or many
with their ordering keys), the engine does the rest.

Retries are kept in PostgreSQL (the row is the truth), so Dramatiq's own are off. An exception
escaping here means the database could not be reached: the row stays `pending` and the sweeper
sends the event again after its lease.
"""

from __future__ import annotations

import dramatiq

from shared.broker import PROCESS_ACTOR, PROCESS_MANY_ACTOR, QUEUE_NAME
from worker.context import WorkerContext


def declare_actors(ctx: WorkerContext) -> None:
    """Declare both actors on the context's broker, each running the context's engine."""

    def process_event(event_id: str, ordering_key: str | None = None, claim: bool = False) -> None:
        # Messages carry the id alone, or the id and its ordering key (no look-up then); the
        # sweeper's ask to claim the event before it runs (its worker may have died in it).
        ctx.booted().handle(event_id, ordering_key, claim=claim)

    def process_events(events: list[list[str]]) -> None:
        # [[id, ordering key], ...]: what the receiver committed in one batch.
        ctx.booted().handle_many([(str(e[0]), str(e[1])) for e in events])

    for fn, name in ((process_event, PROCESS_ACTOR), (process_events, PROCESS_MANY_ACTOR)):
        declare = dramatiq.actor(
            actor_name=name, queue_name=QUEUE_NAME, max_retries=0, broker=ctx.broker
        )
        declare(fn)
