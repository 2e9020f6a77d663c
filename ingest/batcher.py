"""Grouped intake: the rows of concurrent requests are written by one multi-row INSERT.

A flush starts when a flush slot is free and either no flush is running (an idle receiver adds
no latency), `max_rows` rows are waiting, or the oldest waiting row has waited `window`
seconds. While a flush is in flight, new rows collect for the next one. Each request awaits
its own row's commit:

- a row that is new in the batch answers `duplicate: false` for the first request carrying its
  id and `duplicate: true` for the others (the INSERT gets each id once);
- when PostgreSQL rejects the batch for a row's size or content (SQLSTATE classes 54, 22, 23),
  the rows are written again one per statement on the same connection, so only the bad row is
  refused (`EventRejected`) and the others are stored;
- any other database failure fails exactly the requests of that batch with
  `DatabaseUnavailable` (nothing of it is committed), and later batches try again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from ingest.event import EventRow
from ingest.metrics import IntakeMetrics
from ingest.storage import EventRejected, insert_events
from shared.db import AsyncConnection, DatabaseUnavailable
from shared.errors import error_line
from shared.logging import log_ids

log = structlog.get_logger("ingest.batcher")

# How long a flush waits for a pooled connection before its requests answer 503.
ACQUIRE_TIMEOUT_S = 3.0
# Payload bytes per INSERT: bodies may be up to MAX_BODY_BYTES each; a batch stays sensible.
MAX_BATCH_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class _Waiting:
    row: EventRow
    future: asyncio.Future[bool]
    since: float = field(default=0.0)


class Batcher:
    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection],
        *,
        max_rows: int,
        window_s: float,
        max_inflight: int,
        on_new: Callable[[list[tuple[str, str]]], None],
        metrics: IntakeMetrics,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    ) -> None:
        self._pool = pool
        self._max_rows = max(1, max_rows)
        self._window = max(0.0, window_s)
        self._max_inflight = max(1, max_inflight)
        self._on_new = on_new
        self._metrics = metrics
        self._acquire_timeout = acquire_timeout_s
        self._waiting: deque[_Waiting] = deque()
        self._waiting_bytes = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="intake-batcher")

    async def store(self, row: EventRow) -> bool:
        """Commit `row` (grouped with its neighbours); True when this request stored it first.

        Raises EventRejected when PostgreSQL refuses the row itself, DatabaseUnavailable when
        its batch could not be written.
        """
        if self._closing or self._runner is None or self._runner.done():
            raise DatabaseUnavailable("the receiver is not taking events")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(_Waiting(row, future, loop.time()))
        self._waiting_bytes += len(row.payload)
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Flush what is waiting, wait for the flushes in flight, stop."""
        self._closing = True
        self._wake.set()
        if self._runner is not None:
            await self._runner

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                if self._closing:
                    break
                await self._sleep(None)
            elif len(self._inflight) >= self._max_inflight:
                await self._sleep(None)
            elif (
                self._inflight
                and not self._closing
                and len(self._waiting) < self._max_rows
                and self._waiting_bytes < MAX_BATCH_BYTES
                and (delay := self._waiting[0].since + self._window - loop.time()) > 0
            ):
                await self._sleep(delay)
            else:
                task = loop.create_task(self._flush(self._take()))
                self._inflight.add(task)
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def _take(self) -> list[_Waiting]:
        """The oldest waiting rows, up to `max_rows` and MAX_BATCH_BYTES (at least one)."""
        batch: list[_Waiting] = []
        size = 0
        while self._waiting and len(batch) < self._max_rows:
            payload = len(self._waiting[0].row.payload)
            if batch and size + payload > MAX_BATCH_BYTES:
                break
            batch.append(self._waiting.popleft())
            size += payload
        self._waiting_bytes -= size
        return batch

    async def _sleep(self, timeout: float | None) -> None:
        """Until something changes (a row arrives, a flush ends, close) or `timeout` passes."""
        self._wake.clear()
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(timeout, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    async def _flush(self, batch: list[_Waiting]) -> None:
        try:
            unique: dict[str, EventRow] = {}
            for waiting in batch:
                unique.setdefault(waiting.row.id, waiting.row)
            rows = list(unique.values())
            self._metrics.batch_rows.observe(len(rows))
            new, failed = await self._write(rows)
            self._resolve(batch, new, failed)
            if new:
                stored = [(row.id, row.ordering_key) for row in rows if row.id in new]
                log_ids(log, "webhook.stored", [i for i, _ in stored])
                self._on_new(stored)
        except Exception as e:  # never leave a request waiting forever
            log.exception("intake.flush_crashed", rows=len(batch))
            _fail(batch, DatabaseUnavailable(type(e).__name__))
        finally:
            self._inflight.discard(asyncio.current_task())
            self._wake.set()

    async def _write(self, rows: Sequence[EventRow]) -> tuple[set[str], dict[str, Exception]]:
        """The new ids, and the ids that failed with their error."""
        try:
            async with self._pool.connection(timeout=self._acquire_timeout) as conn:
                try:
                    return await insert_events(conn, rows), {}
                except EventRejected as e:
                    if len(rows) == 1:
                        log.warning("intake.row_rejected", event_id=rows[0].id, error=str(e))
                        return set(), {rows[0].id: e}
                    log.warning("intake.batch_rejected", rows=len(rows), error=str(e))
                return await _one_by_one(conn, rows)
        except psycopg.Error as e:  # the pool could not give a connection (PoolTimeout)
            error: Exception = DatabaseUnavailable(error_line(e, with_type=False))
        except DatabaseUnavailable as e:
            error = e
        self._metrics.database_errors.inc()
        log.warning("intake.batch_failed", rows=len(rows), error=str(error))
        return set(), {row.id: error for row in rows}

    def _resolve(self, batch: list[_Waiting], new: set[str], failed: dict[str, Exception]) -> None:
        claimed: set[str] = set()
        for waiting in batch:
            if waiting.future.done():  # the request was cancelled
                continue
            event_id = waiting.row.id
            error = failed.get(event_id)
            if error is not None:
                # One exception object per request: a shared one would collect every traceback.
                waiting.future.set_exception(type(error)(*error.args))
            elif event_id in new and event_id not in claimed:
                claimed.add(event_id)
                waiting.future.set_result(True)
            else:
                waiting.future.set_result(False)


async def _one_by_one(
    conn: AsyncConnection, rows: Sequence[EventRow]
) -> tuple[set[str], dict[str, Exception]]:
    """Each row in its own transaction: only the rows PostgreSQL refuses fail.

    A connection-level failure fails that row and every row after it (they were not written).
    """
    new: set[str] = set()
    failed: dict[str, Exception] = {}
    broken: DatabaseUnavailable | None = None
    for row in rows:
        if broken is not None:
            failed[row.id] = broken
            continue
        try:
            new |= await insert_events(conn, [row])
        except EventRejected as e:
            log.warning("intake.row_rejected", event_id=row.id, error=str(e))
            failed[row.id] = e
        except DatabaseUnavailable as e:
            broken = e
            failed[row.id] = e
    return new, failed


def _fail(batch: list[_Waiting], error: Exception) -> None:
    for waiting in batch:
        if not waiting.future.done():
            waiting.future.set_exception(type(error)(*error.args))
