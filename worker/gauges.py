"""Gauges read when Prometheus scrapes: from PostgreSQL (the backlog, its ages, open dead letters,
the notifications outbox) and from Redis (the depth of Dramatiq's queues).

They are collectors, not metrics kept in a process: the figures are right whichever worker is
alive, and every worker host exposes the same ones (aggregate them with `max`, not `sum`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
import structlog

from shared.broker import QUEUE_NAME, queue_key
from shared.db import connect
from worker import sql
from worker.mirror.notifications import MAX_ATTEMPTS
from worker.mirror.notifications import QUEUE as NOTIFICATIONS_QUEUE

log = structlog.get_logger(__name__)

# Dramatiq's queues and their delay queues (`<queue>.DQ`: retries and other delayed messages).
QUEUES = (QUEUE_NAME, f"{QUEUE_NAME}.DQ", NOTIFICATIONS_QUEUE, f"{NOTIFICATIONS_QUEUE}.DQ")

# name, help, column of sql.BACKLOG or sql.OUTBOX
_DATABASE = (
    ("stripe_events_backlog", "Events pending (not finished).", "pending"),
    (
        "stripe_events_waiting_retry",
        "Pending events whose next attempt is due later (after a failure's backoff).",
        "waiting_retry",
    ),
    ("stripe_events_dead", "Open dead letters: dead events not resolved.", "dead"),
    (
        "stripe_events_oldest_pending_age_seconds",
        "Age of the oldest pending event since its latest enqueue: its receipt, or the replay"
        " that put it back to pending.",
        "oldest_pending_s",
    ),
    (
        "stripe_events_oldest_pending_since_receipt_seconds",
        "Age of the oldest pending event since its first receipt (replays do not reset it).",
        "oldest_pending_since_receipt_s",
    ),
    (
        "stripe_notifications_unsent",
        "Notifications in the outbox not sent yet and still to be tried.",
        "unsent",
    ),
    (
        "stripe_notifications_retrying",
        "Unsent notifications whose last send failed (they are tried again).",
        "retrying",
    ),
    (
        "stripe_notifications_failed",
        "Notifications given up on after their last allowed attempt (never sent).",
        "failed",
    ),
    (
        "stripe_notifications_oldest_unsent_age_seconds",
        "Age of the oldest notification still to be sent.",
        "oldest_unsent_s",
    ),
)


class DatabaseGauges:
    """The backlog, its ages, dead letters and the notifications outbox, read from PostgreSQL."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("stripe_ingest_database_up", "1 when the last scrape read the DB.")
        try:
            with connect(self.database_url, autocommit=True, connect_timeout=3) as conn:
                row = conn.execute(sql.BACKLOG).fetchone()
                outbox = conn.execute(sql.OUTBOX, {"max_attempts": MAX_ATTEMPTS}).fetchone()
        except Exception as e:
            log.warning("metrics.database_unavailable", error=type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        assert row is not None and outbox is not None
        up.add_metric([], 1)
        yield up
        values = {**row, **outbox}
        for name, doc, column in _DATABASE:
            yield GaugeMetricFamily(name, doc, value=values[column])


class BrokerGauges:
    """How many messages wait in Dramatiq's Redis queues, read from Redis at scrape time.

    For each queue `Q` of namespace `N`, Dramatiq keeps the ids of the messages no worker has
    taken yet in the list `N:Q` and every message not yet acknowledged in the hash `N:Q.msgs`
    (those waiting plus those a worker holds, prefetched or running).
    """

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("stripe_ingest_redis_up", "1 when the last scrape read Redis.")
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3, socket_timeout=3)
        try:
            with client.pipeline(transaction=False) as pipe:
                for queue in QUEUES:
                    key = queue_key(self.namespace, queue)
                    pipe.llen(key)
                    pipe.hlen(f"{key}.msgs")
                counts = pipe.execute()
        except redis.RedisError as e:
            log.warning("metrics.redis_unavailable", error=type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        finally:
            client.close()
        up.add_metric([], 1)
        yield up
        waiting = GaugeMetricFamily(
            "stripe_queue_waiting_messages",
            "Messages in a Dramatiq queue that no worker has taken yet.",
            labels=["queue"],
        )
        stored = GaugeMetricFamily(
            "stripe_queue_messages",
            "Messages of a Dramatiq queue not yet acknowledged (waiting or held by a worker).",
            labels=["queue"],
        )
        for i, queue in enumerate(QUEUES):
            waiting.add_metric([queue], counts[2 * i])
            stored.add_metric([queue], counts[2 * i + 1])
        yield waiting
        yield stored
