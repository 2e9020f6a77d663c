"""Enqueue committed event ids off the response path, in batches, through one Redis pipeline.

The response never waits for Redis: new ids are handed over here after their commit and sent
by a background task. A failure is logged (`webhook.enqueue_failed`) and counted, nothing else:
the rows stay `pending` and the sweeper enqueues them once their `enqueued_at` is older than its
lease.

What is sent, and how, is given as `send` (`ingest.dramatiq_compat.RedisEnqueue` in the app).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

import structlog

from ingest.metrics import IntakeMetrics
from shared.errors import error_line

log = structlog.get_logger("ingest.enqueuer")

MAX_IDS_PER_SEND = 500
# Ids kept while Redis does not take them; beyond this they are counted as failed at once.
MAX_BACKLOG = 100_000


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
                self._failed(batch, error_line(e, with_type=False))
            else:
                self._metrics.enqueued.inc(len(batch))
            self._sending = []  # left as is when cancelled: close() counts it

    def _failed(self, events: list[tuple[str, str]], error: str) -> None:
        self._metrics.enqueue_failures.inc(len(events))
        event_ids = [event_id for event_id, _ in events[:20]]
        log.warning("webhook.enqueue_failed", count=len(events), event_ids=event_ids, error=error)
