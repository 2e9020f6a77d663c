"""Readiness probes: does PostgreSQL answer, does Redis answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
import structlog

from ingest.dramatiq_compat import RedisEnqueue
from shared.errors import error_line

log = structlog.get_logger("ingest.probes")

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Probe:
    name: str
    run: Callable[[], Awaitable[object]]

    async def check(self) -> bool:
        try:
            await asyncio.wait_for(self.run(), PROBE_TIMEOUT_S)
        except Exception as e:
            log.warning("web.probe_failed", probe=self.name, error=error_line(e, with_type=False))
            return False
        return True


def postgresql_probe(url: str) -> Probe:
    async def run() -> None:
        # Its own short-lived connection: a busy pool must not make the process look down.
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=2, autocommit=True)
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()

    return Probe("postgresql", run)


def redis_probe(enqueue: RedisEnqueue) -> Probe:
    """The same Redis connection settings the enqueuer uses."""
    return Probe("redis", enqueue.ping)
