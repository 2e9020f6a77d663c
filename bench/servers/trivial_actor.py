"""The pipeline baseline: a Dramatiq actor doing one UPDATE per message, nothing else.

    python -m dramatiq bench.servers.trivial_actor --processes 2 --threads 8

No ordering, no locks, no handlers: the most a Dramatiq worker on this machine can finish.
Reads DATABASE_URL, REDIS_URL and REDIS_NAMESPACE through `Settings`; the pool opens on the
first message.
"""

from __future__ import annotations

import threading

import dramatiq
from psycopg_pool import ConnectionPool

from shared.broker import PROCESS_ACTOR, QUEUE_NAME, make_broker
from shared.settings import Settings

FINISH = """
UPDATE stripe_events
SET status = 'processed', attempts = attempts + 1, processed_at = clock_timestamp(),
    process_seq = nextval('process_seq')
WHERE id = %s AND status = 'pending'
"""

settings = Settings.from_env(env_file=None)
broker = make_broker(settings)
dramatiq.set_broker(broker)
_lock = threading.Lock()
_pool: ConnectionPool | None = None


def _connections() -> ConnectionPool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ConnectionPool(
                settings.database_url,
                min_size=1,
                max_size=settings.worker_threads,
                kwargs={"autocommit": True},
            )
            _pool.wait()
        return _pool


@dramatiq.actor(actor_name=PROCESS_ACTOR, queue_name=QUEUE_NAME, max_retries=3)
def process_event(event_id: str) -> None:
    with _connections().connection() as conn:
        conn.execute(FINISH, (event_id,))
