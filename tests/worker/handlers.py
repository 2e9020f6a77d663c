"""Handlers the worker tests register (in-process, or in real workers via USER_HANDLERS).

Their behaviour comes from the event's `data.object.metadata`. `record` writes with a plain
INSERT into a primary-keyed table: a second effect for one event would fail, not hide.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from worker.registry import Event, Tx, handles

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS worker_test_effects (
    event_id     text PRIMARY KEY,
    ordering_key text NOT NULL,
    pid          integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

RECORD = "test.worker.record"
FLAKY = "test.worker.flaky"
POISON = "test.worker.poison"
BLOCK_ONCE = "test.worker.block_once"
SLOW = "test.worker.slow"
KILL = "test.worker.kill"


def _meta(event: Event) -> dict[str, str]:
    meta = event.object.get("metadata") or {}
    return {str(k): str(v) for k, v in meta.items()}


def _record(tx: Tx, event: Event) -> None:
    tx.execute(
        "INSERT INTO worker_test_effects (event_id, ordering_key, pid) VALUES (%s, %s, %s)",
        (event.id, event.ordering_key, os.getpid()),
    )


@handles(RECORD)
def record(tx: Tx, event: Event) -> None:
    """Writes its effect, after `sleep_ms` if given (the transaction stays open meanwhile)."""
    time.sleep(int(_meta(event).get("sleep_ms", "0")) / 1000)
    _record(tx, event)


@handles(FLAKY)
def flaky(tx: Tx, event: Event) -> None:
    """Fails on its first `fail_times` attempts (the attempt number is the DB's, so this holds
    across processes and restarts)."""
    _record(tx, event)
    if event.attempt <= int(_meta(event).get("fail_times", "0")):
        raise RuntimeError(f"flaky failure on attempt {event.attempt}")


@handles(POISON)
def poison(tx: Tx, event: Event) -> None:
    _record(tx, event)
    raise ValueError("this event can never be processed")


@handles(BLOCK_ONCE)
def block_once(tx: Tx, event: Event) -> None:
    """The first run writes its pid to `marker` and hangs (a test kills the process)."""
    marker = Path(_meta(event)["marker"])
    try:
        with marker.open("x") as f:
            f.write(str(os.getpid()))
    except FileExistsError:
        _record(tx, event)
        return
    time.sleep(600)


@handles(SLOW)
def slow(tx: Tx, event: Event) -> None:
    """Writes its pid to `marker` when it starts, then takes `sleep_s` seconds."""
    Path(_meta(event)["marker"]).write_text(str(os.getpid()))
    time.sleep(float(_meta(event).get("sleep_s", "1")))
    _record(tx, event)


@handles(KILL)
def kill(tx: Tx, event: Event) -> None:
    """Kills its own worker process, every time (a crash or an out-of-memory kill would)."""
    _record(tx, event)
    os.kill(os.getpid(), signal.SIGKILL)
