"""A copy of Dramatiq's internals: what `RedisBroker.enqueue` writes, for a batch in one call.

Copied from dramatiq 2.2.1 (pinned below 3 in pyproject.toml): the `enqueue` branch of
`dramatiq/brokers/redis/dispatch.lua` (in `dramatiq_enqueue.lua`), the `redis_message_id` option
`RedisBroker.enqueue` gives each message, its enqueue hooks, and `JSONEncoder`'s output.
tests/ingest/test_enqueue_format.py guards it against the real broker: the same keys, messages
that decode and re-encode to the same bytes, and a real consumer that gets them in order.

The sending runs on the event loop with redis' asyncio client rather than in a thread: a thread
packing commands holds the GIL while the loop waits for it, which shows in the receiver's p99.
"""

from __future__ import annotations

import os
from importlib.resources import files
from typing import Any

import dramatiq
import orjson
import redis.asyncio
from dramatiq import Message, Middleware
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.encoder import JSONEncoder

from shared.broker import EVENTS_PER_MESSAGE, QUEUE_NAME, events_message

__all__ = ["EVENTS_PER_MESSAGE", "RedisEnqueue"]


def _script() -> str:
    return files("ingest").joinpath("dramatiq_enqueue.lua").read_text()


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
        self._enqueue_all: Any = self.client.register_script(_script())
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
