"""The receiver's batched enqueue (ingest/dramatiq_compat.py, a copy of Dramatiq's internals)
writes what Dramatiq's RedisBroker writes, so workers consume it as usual; and the payload
column uses lz4 where the server has it."""

from __future__ import annotations

import psycopg
import pytest
import redis
from dramatiq import Message

from ingest.dramatiq_compat import EVENTS_PER_MESSAGE, RedisEnqueue
from shared.broker import PROCESS_MANY_ACTOR, QUEUE_NAME, events_message, make_broker
from shared.settings import Settings

# Three messages: two full, one with the rest.
EVENTS = [(f"evt_{i:03d}", f"cus_{i % 7}") for i in range(2 * EVENTS_PER_MESSAGE + 5)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _message(value: bytes | str) -> Message[object]:
    return Message.decode(value if isinstance(value, bytes) else value.encode())


@pytest.mark.anyio
async def test_a_batch_is_stored_as_the_broker_stores_it_and_a_consumer_gets_it_in_order(
    settings: Settings, redis_url: str, redis_namespace: str
) -> None:
    broker = make_broker(settings)
    enqueue = RedisEnqueue(broker, redis_url)
    try:
        await enqueue(EVENTS)
    finally:
        await enqueue.aclose()
    reference = make_broker(settings.with_overrides(redis_namespace=f"{redis_namespace}-ref"))
    client = redis.Redis.from_url(redis_url)
    try:
        reference.enqueue(events_message([("evt_ref", "cus_ref")]))
        ours = {_text(k)[len(redis_namespace) :] for k in client.keys(f"{redis_namespace}:*")}
        theirs = {
            _text(k)[len(redis_namespace) + 4 :] for k in client.keys(f"{redis_namespace}-ref:*")
        }
        hash_key = f"{redis_namespace}:{QUEUE_NAME}.msgs"
        raw = list(client.hgetall(hash_key).values())
        stored = [_message(v) for v in raw]
        ref_hash_key = f"{redis_namespace}-ref:{QUEUE_NAME}.msgs"
        (ref_stored,) = [_message(v) for v in client.hgetall(ref_hash_key).values()]
        heartbeats = client.zrange(f"{redis_namespace}:__heartbeats__", 0, -1)
    finally:
        client.delete(*client.keys(f"{redis_namespace}-ref:*"))
        client.close()
        reference.close()

    assert ours == theirs  # the same keys: heartbeats, queue list, message hash
    assert heartbeats == [broker.broker_id.encode()]
    # Byte for byte what Dramatiq's own encoder makes of the same message.
    assert [_message(v).encode() for v in raw] == raw
    for message in stored:
        assert set(message.asdict()) == set(ref_stored.asdict())
        assert (message.queue_name, message.actor_name) == (QUEUE_NAME, PROCESS_MANY_ACTOR)
        assert message.kwargs == {}
        assert set(message.options) == set(ref_stored.options) == {"redis_message_id"}
    assert (
        len({m.message_id for m in stored})
        == len({m.options["redis_message_id"] for m in stored})
        == 3
    )

    consumer = broker.consume(QUEUE_NAME, prefetch=10, timeout=1000)
    try:
        received = [next(consumer) for _ in range(3)]
        # EVENTS_PER_MESSAGE pairs per message, in the order given.
        assert [[tuple(p) for p in m.args[0]] for m in received if m is not None] == [
            EVENTS[:EVENTS_PER_MESSAGE],
            EVENTS[EVENTS_PER_MESSAGE : 2 * EVENTS_PER_MESSAGE],
            EVENTS[2 * EVENTS_PER_MESSAGE :],
        ]
        for m in received:
            assert m is not None
            consumer.ack(m)
    finally:
        consumer.close()
        broker.close()


def test_the_payload_column_compresses_with_lz4_when_the_server_has_it(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT 'lz4' = ANY (enumvals) FROM pg_settings"
            " WHERE name = 'default_toast_compression'"
        ).fetchone()
        method = conn.execute(
            "SELECT attcompression FROM pg_attribute"
            " WHERE attrelid = 'stripe_events'::regclass AND attname = 'payload'"
        ).fetchone()
    assert row is not None and method is not None
    assert method[0] == ("l" if row[0] else "")
