"""Handlers the reliability scenarios register in real workers (USER_HANDLERS).

`rel_effects` has no key: an effect applied twice shows as two rows, which is what the
scenarios count as a duplicate effect. What a handler does comes from `data.object.metadata`.
"""

from __future__ import annotations

import os
import signal
import time

from worker.registry import Event, Tx, handles

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS rel_effects (
    event_id text NOT NULL,
    pid      integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

RECORD = "rel.record"
POISON = "rel.poison"
KILL = "rel.kill"


def _meta(event: Event) -> dict[str, str]:
    meta = event.object.get("metadata") or {}
    return {str(k): str(v) for k, v in meta.items()}


def _record(tx: Tx, event: Event) -> None:
    tx.execute("INSERT INTO rel_effects (event_id, pid) VALUES (%s, %s)", (event.id, os.getpid()))


@handles(RECORD)
def record(tx: Tx, event: Event) -> None:
    """Its effect, after `sleep_ms` (the transaction stays open meanwhile)."""
    time.sleep(int(_meta(event).get("sleep_ms", "0")) / 1000)
    _record(tx, event)


@handles(POISON)
def poison(tx: Tx, event: Event) -> None:
    _record(tx, event)
    raise ValueError("this event can never be processed")


@handles(KILL)
def kill(tx: Tx, event: Event) -> None:
    """Kills its own worker process every time, as a crash or the OOM killer would."""
    _record(tx, event)
    os.kill(os.getpid(), signal.SIGKILL)
