"""The `deliver_notification` actor (queue "notifications"): a list of notification ids."""

from __future__ import annotations

import dramatiq

from worker.context import WorkerContext
from worker.mirror import notifications


def declare_delivery_actor(ctx: WorkerContext) -> None:
    """Declare the actor on the context's broker, delivering with its pool and transport."""

    def deliver_notification(notification_ids: list[int] | int) -> None:
        # A list of ids (one message per transaction's notifications), or one id (older senders).
        if isinstance(notification_ids, list):
            ids = [int(i) for i in notification_ids]
        else:
            ids = [int(notification_ids)]
        notifications.deliver_many(ctx.settings, ids, ctx.pool, ctx.transport)

    declare = dramatiq.actor(
        actor_name=notifications.ACTOR,
        queue_name=notifications.QUEUE,
        max_retries=notifications.MAX_ATTEMPTS,
        min_backoff=1_000,
        max_backoff=300_000,
        broker=ctx.broker,
    )
    declare(deliver_notification)
