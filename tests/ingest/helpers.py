"""Helpers for the receiver's tests: readers of what it stored (PostgreSQL rows) and enqueued
(the Dramatiq queue in Redis), the app served in-process, and signed deliveries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import psycopg
import redis
from dramatiq import Message
from psycopg.rows import dict_row
from starlette.applications import Starlette

from shared.broker import PROCESS_MANY_ACTOR, QUEUE_NAME, message_event_ids
from tests.conftest import SECRET
from tests.support import sign


class Stored:
    """What the receiver left behind: rows in `stripe_events`, messages in the Dramatiq queue."""

    def __init__(self, database_url: str, redis_url: str, namespace: str) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.namespace = namespace

    def rows(self) -> dict[str, dict[str, Any]]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            found = conn.execute("SELECT * FROM stripe_events ORDER BY id").fetchall()
        return {row["id"]: row for row in found}

    def queued(self) -> list[str]:
        """Event ids named by the messages waiting in the queue, in queue order. The receiver
        sends `process_events` messages, each naming its ids with their ordering keys."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            pipe = client.pipeline(transaction=True)  # both keys at one instant
            pipe.lrange(f"{self.namespace}:{QUEUE_NAME}", 0, -1)
            pipe.hgetall(f"{self.namespace}:{QUEUE_NAME}.msgs")
            listed, bodies = pipe.execute()
            order = [m.decode() for m in listed]
        finally:
            client.close()
        assert len(bodies) == len(order), "queue list and message hash disagree"
        ids = []
        for redis_id in order:
            message = Message.decode(bodies[redis_id.encode()])
            assert message.actor_name == PROCESS_MANY_ACTOR
            assert message.queue_name == QUEUE_NAME
            ids.extend(message_event_ids(message.actor_name, message.args))
        return ids

    async def wait_queued(self, count: int, timeout: float = 5.0) -> list[str]:
        """The queue once it holds `count` messages (plus a short grace to see no more come).

        Async: the receiver's enqueuer runs on the test's event loop and must get turns."""
        deadline = time.monotonic() + timeout
        while len(self.queued()) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        return self.queued()

    def wait_queued_sync(self, count: int, timeout: float = 5.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.queued()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        return self.queued()


# Grouping made deterministic: a trigger makes inserts of `evt_hold*` ids wait on an advisory lock
# the test holds (the `hold` fixture), so a batch stays in flight while the next one collects.
LOCK = 424242
HOLD_TRIGGER = f"""
CREATE FUNCTION test_hold_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id LIKE 'evt_hold%' THEN
        PERFORM pg_advisory_xact_lock({LOCK});
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_hold BEFORE INSERT ON stripe_events
    FOR EACH ROW EXECUTE FUNCTION test_hold_insert();
"""
WAITING = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'
ORDER BY query_start
"""


async def waiting_backends(conn: psycopg.Connection[tuple[object, ...]], count: int) -> list[int]:
    """The backends waiting on the hold lock, once there are `count` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        pids = [int(str(r[0])) for r in conn.execute(WAITING).fetchall()]
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        await asyncio.sleep(0.02)


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://receiver.test"
        ) as client,
    ):
        yield client


def signed(
    event: dict[str, Any] | bytes, secret: str = SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    return body, {"Stripe-Signature": sign(body, secret, timestamp)}


async def deliver(
    client: httpx.AsyncClient,
    event: dict[str, Any] | bytes,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    body, headers = signed(event, secret, timestamp)
    return await client.post("/webhooks/stripe", content=body, headers=headers)
