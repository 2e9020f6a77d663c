"""What the mirror's handlers use besides the transaction, built once per worker process."""

from __future__ import annotations

import functools

from dramatiq.brokers.redis import RedisBroker

from shared.settings import Settings
from worker.mirror import notifications, stripe_api
from worker.registry import Services


def mirror_services(settings: Settings, broker: RedisBroker) -> Services:
    """A Stripe client when STRIPE_API_KEY is set; notifications sent through `broker`."""
    return Services(
        stripe=stripe_api.make_client(settings),
        enqueue_notifications=functools.partial(notifications.enqueue, broker),
    )
