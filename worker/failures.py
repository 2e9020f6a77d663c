"""A failed attempt, written in its own transaction: a retry later, or the dead letter.

The round that failed was rolled back, so the key's lock is taken again; if another worker
took the key meanwhile, nothing is written here: that worker runs the event again and counts
its own attempt. The row is only changed if its `attempts` is still what the round read.
"""

from __future__ import annotations

from typing import Any

import psycopg
import structlog

from shared.db import Connection
from shared.errors import translate_db_error
from worker import sql
from worker.inflight import InFlight, Outcome
from worker.policy import backoff_ms, key_lock_id, traceback_text
from worker.rounds import RoundSpec

log = structlog.get_logger("worker.processing")


def record_failure(
    conn: Connection,
    spec: RoundSpec,
    inflight: InFlight,
    error: str,
    tb: str,
    *,
    worker_died: bool = False,
) -> Outcome | None:
    """Count the failed attempt and commit; the outcome (retry or dead), or None when the key
    was taken by another worker before the failure could be written. A claimed attempt's
    'running' row gives way to the outcome, unless its worker died in it (`worker_died`)."""
    event = inflight.event
    settings = spec.settings
    dead = event.attempt >= settings.worker_max_retries
    delay = backoff_ms(
        event.attempt, settings.worker_min_backoff_ms, settings.worker_max_backoff_ms
    )
    params: dict[str, Any] = {
        "id": event.id,
        "lock": key_lock_id(event.ordering_key),
        "attempts": event.attempt - (0 if inflight.counted else 1),
        "add": 0 if inflight.counted else 1,
        "claimed": inflight.counted and not worker_died,
        "error": error,
        "started": inflight.started,
        "worker": spec.worker_id,
    }
    if dead:
        params["traceback"] = traceback_text(tb)
    else:
        params["delay_s"] = delay / 1000
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            cur = conn.execute(sql.GIVE_UP if dead else sql.RETRY_LATER, params)
            conn.execute("COMMIT")
        written = cur.fetchone() is not None
    except psycopg.Error as e:
        raise translate_db_error(e, conn) from e
    if not written:
        log.info("event.failure_not_recorded", event_id=event.id, reason="key taken")
        return None
    fields = {"event_id": event.id, "event_type": event.type, "attempt": event.attempt}
    if dead:
        log.error("event.dead", **fields, error=error)
        return Outcome(event.id, "dead", event.attempt, error=error)
    log.warning("event.failed", **fields, retry_in_ms=delay, error=error)
    return Outcome(event.id, "retry", event.attempt, error=error, retry_in_ms=delay)
