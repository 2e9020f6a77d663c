"""Enqueue committed event ids off the response path, in batches, through one Redis pipeline.

The response never waits for Redis: new ids are handed over here after their commit and sent
by a background task. A failure is logged (`webhook.enqueue_failed`) and counted, nothing else:
the rows stay `pending` and the sweeper enqueues them once their `enqueued_at` is older than its
lease.

The sending runs on the event loop with redis' asyncio client rather than in a thread: a thread
packing commands holds the GIL while the loop waits for it, which shows in the receiver's p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import dramatiq
import orjson
import redis.asyncio
import structlog
from dramatiq import Message, Middleware
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.encoder import JSONEncoder

from ingest.metrics import IntakeMetrics
from shared.broker import QUEUE_NAME, events_message

log = structlog.get_logger("ingest.enqueuer")

MAX_IDS_PER_SEND = 500
# Events named by one message: a worker processes them together, many keys per transaction.
EVENTS_PER_MESSAGE = 64
# Ids kept while Redis does not take them; beyond this they are counted as failed at once.
MAX_BACKLOG = 100_000

# The `enqueue` branch of Dramatiq's dispatch script (heartbeat, message data, queue entry),
# for every message of a batch in one call; atomic like the original.
_ENQUEUE_ALL = """
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
for i = 3, #ARGV, 2 do
    redis.call("hset", KEYS[3], ARGV[i], ARGV[i + 1])
    redis.call("rpush", KEYS[2], ARGV[i])
end
"""


def _uuid4(hexes: str, at: int) -> str:
    """The text of a random UUID (version 4) from 32 random hex digits of `hexes` at `at`;
    `str(uuid4())` costs several times as much and a batch needs two per message."""
    h = hexes[at : at + 32]
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


class RedisEnqueue:
    """What `RedisBroker.enqueue` writes for each id, for a whole batch in one round trip.

    Dramatiq's dispatch script, for `enqueue`, records the sender's heartbeat (`ZADD`), stores
    the encoded message under a fresh `redis_message_id` (`HSET <queue>.msgs`) and appends that
    id to the queue (`RPUSH`). Calling it once per message costs a Lua run, a command and a reply
    each; one script call does the same writes for the whole batch, atomically like the original,
    so workers read exactly what the broker would have written. The broker's enqueue hooks run
    for each message as in `RedisBroker.enqueue`.
    """

    def __init__(self, broker: RedisBroker, redis_url: str) -> None:
        self._broker = broker
        self.client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=5
        )
        namespace = broker.namespace
        self._heartbeats = f"{namespace}:__heartbeats__"
        self._queue = f"{namespace}:{QUEUE_NAME}"
        self._messages = f"{self._queue}.msgs"
        self._keys = [self._heartbeats, self._queue, self._messages]
        self._enqueue_all: Any = self.client.register_script(_ENQUEUE_ALL)
        # Dramatiq's default encoder is compact JSON of the message's fields; orjson writes the
        # same text at a fraction of the cost. Any other encoder is used as configured.
        self._json = isinstance(dramatiq.get_encoder(), JSONEncoder)
        self._hooks = any(
            type(m).before_enqueue is not Middleware.before_enqueue
            or type(m).after_enqueue is not Middleware.after_enqueue
            for m in broker.middleware
        )

    def _encode(self, message: Message[object]) -> bytes:
        if not self._json:
            return message.encode()
        return orjson.dumps(
            {
                "queue_name": message.queue_name,
                "actor_name": message.actor_name,
                "args": message.args,
                "kwargs": message.kwargs,
                "options": message.options,
                "message_id": message.message_id,
                "message_timestamp": message.message_timestamp,
            }
        )

    async def __call__(self, events: list[tuple[str, str]]) -> None:
        """One `process_events` message per EVENTS_PER_MESSAGE (id, ordering key) pairs."""
        if not events:
            return
        broker = self._broker
        hooks = self._hooks
        args: list[str | bytes | int] = [current_millis(), broker.broker_id]
        messages: list[Message[object]] = []
        chunks = [
            events[i : i + EVENTS_PER_MESSAGE] for i in range(0, len(events), EVENTS_PER_MESSAGE)
        ]
        hexes = os.urandom(32 * len(chunks)).hex()
        for i, chunk in enumerate(chunks):
            redis_id = _uuid4(hexes, 64 * i)
            message = events_message(
                chunk,
                options={"redis_message_id": redis_id},
                message_id=_uuid4(hexes, 64 * i + 32),
            )
            if hooks:
                broker.emit_before("enqueue", message, None)
                messages.append(message)
            args.append(redis_id)
            args.append(self._encode(message))
        await self._enqueue_all(keys=self._keys, args=args)
        for message in messages:
            broker.emit_after("enqueue", message, None)

    async def ping(self) -> object:
        return await self.client.ping()

    async def aclose(self) -> None:
        await self.client.aclose()


class Enqueuer:
    def __init__(
        self, send: Callable[[list[tuple[str, str]]], Awaitable[None]], metrics: IntakeMetrics
    ) -> None:
        self._send = send
        self._metrics = metrics
        self._ids: deque[tuple[str, str]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        self._sending: list[tuple[str, str]] = []

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="intake-enqueuer")

    def submit(self, events: Iterable[tuple[str, str]]) -> None:
        """Hand over committed new events ((id, ordering key) pairs); never blocks, never raises."""
        for event in events:
            if len(self._ids) >= MAX_BACKLOG:
                self._failed([event], "enqueue backlog full")
            else:
                self._ids.append(event)
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._ids)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send what is left (for at most `timeout_s`), then stop."""
        self._closing = True
        self._wake.set()
        if self._runner is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._runner), timeout_s)
        except TimeoutError:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            left = self._sending + list(self._ids)
            self._ids.clear()
            if left:
                self._failed(left, "shutdown before the broker took them")

    async def _run(self) -> None:
        while True:
            if not self._ids:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._ids.popleft() for _ in range(min(MAX_IDS_PER_SEND, len(self._ids)))]
            self._sending = batch
            try:
                await self._send(batch)
            except Exception as e:
                self._failed(batch, " ".join(str(e).split()) or type(e).__name__)
            else:
                self._metrics.enqueued.inc(len(batch))
            self._sending = []  # left as is when cancelled: close() counts it

    def _failed(self, events: list[tuple[str, str]], error: str) -> None:
        self._metrics.enqueue_failures.inc(len(events))
        event_ids = [event_id for event_id, _ in events[:20]]
        log.warning("webhook.enqueue_failed", count=len(events), event_ids=event_ids, error=error)
