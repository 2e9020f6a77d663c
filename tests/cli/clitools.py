"""Run `stripe-ingest` as a real subprocess, and put events into the states commands act on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row

from ingest.event import event_row
from ingest.storage import insert_events_sync
from shared.broker import QUEUE_NAME
from shared.db import connect
from tests.support import unique_event

ROOT = Path(__file__).resolve().parents[2]
# Variables of the outer environment that would change what the CLI under test does.
_SCRUB = ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE", "STRIPE_API_KEY", "STRIPE_API_BASE")


def cli_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("STRIPE")}
    return {**base, **env, "PYTHONPATH": str(ROOT), **extra}


def run_cli(
    env: dict[str, str],
    *args: str,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """`python -m stripe_ingest.cli.main ARGS` with the test's environment, from a directory
    without `.env`."""
    return subprocess.run(
        [sys.executable, "-m", "stripe_ingest.cli.main", *args],
        env=cli_env(env, **extra),
        cwd=cwd or ROOT / "tests" / "cli",
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_json(env: dict[str, str], *args: str, **extra: str) -> Any:
    result = run_cli(env, *args, "--json", **extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def store_events(url: str, events: Iterable[dict[str, Any]]) -> list[str]:
    rows = [event_row(e, json.dumps(e)) for e in events]
    with connect(url) as conn:
        insert_events_sync(conn, rows)
    return [r.id for r in rows]


def corpus_events(name: str, count: int, prefix: str = "e") -> list[dict[str, Any]]:
    """`count` copies of a corpus event with unique ids, one second apart."""
    events = []
    for i in range(count):
        event = unique_event(name, f"{prefix}{i:04d}")
        event["created"] = 1_700_000_000 + i
        events.append(event)
    return events


def kill(url: str, ids: Iterable[str], error: str = "RuntimeError: boom") -> None:
    """Make events dead as the worker does: status, attempts, a dead letter, an attempt log."""
    with psycopg.connect(url) as conn:
        for event_id in ids:
            conn.execute(
                "UPDATE stripe_events SET status = 'dead', attempts = 3, last_error = %s"
                " WHERE id = %s",
                (error, event_id),
            )
            conn.execute(
                "INSERT INTO dead_letters (event_id, attempts, error, traceback)"
                " VALUES (%s, 3, %s, %s)",
                (event_id, error, f"Traceback (most recent call last):\n  ...\n{error}\n"),
            )
            for attempt in (1, 2, 3):
                conn.execute(
                    "INSERT INTO event_attempts"
                    " (event_id, attempt, started_at, finished_at, outcome, error, worker)"
                    " VALUES (%s, %s, now(), now(), %s, %s, 'test')",
                    (event_id, attempt, "dead" if attempt == 3 else "failed", error),
                )


def finish(url: str, ids: Iterable[str], status: str = "processed", age: str = "0") -> None:
    with psycopg.connect(url) as conn:
        for event_id in ids:
            conn.execute(
                "UPDATE stripe_events SET status = %s, attempts = 1,"
                " processed_at = now() - %s::interval, process_seq = nextval('process_seq')"
                " WHERE id = %s",
                (status, age, event_id),
            )


def rows(url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return list(conn.execute(query, params).fetchall())


def enqueued_ids(redis_url: str, namespace: str) -> list[str]:
    """Event ids of the messages waiting in our Dramatiq queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hvals(f"{namespace}:{QUEUE_NAME}.msgs")
    finally:
        client.close()
    return sorted(json.loads(m)["args"][0] for m in raw)
