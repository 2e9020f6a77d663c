"""`backfill`'s fetching phase: the window in time segments, read concurrently under one rate
limit, each segment resumable on its own.

[since, now) is cut into segments of equal time (the newest one without an upper bound, so that
what is created meanwhile is still listed, as a single sequential read would). `parallel`
threads take them newest first, each with its own Stripe client and database connection, and
page through each with `created[gte]`/`created[lt]` and the segment's own `starting_after`.
Every request takes a token from one bucket shared by all threads (by default 90% of Stripe's
read limit for the key's mode, 25/s in test mode, 100/s live); a 429, a connection error or a
5xx that Stripe does not forbid retrying is retried with backoff, waiting at least its
Retry-After. Each page commits with its segment's cursor, so a run stopped anywhere (an error,
Ctrl-C, SIGKILL) resumes every unfinished segment at its next page and skips finished ones.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
import orjson
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared.errors import error_line
from shared.settings import Settings
from stripe_ingest.cli import store
from stripe_ingest.cli.stripe_lists import TokenBucket, is_live_key

PAGE_SIZE = 100
LIVE_LIMIT, TEST_LIMIT = 100.0, 25.0  # Stripe's read requests a second
SHARE = 0.9  # of the limit this client uses by default: room for the rest of the deployment
SEGMENTS_PER_THREAD = 4  # more segments than threads, so that an uneven window still balances
MIN_SEGMENT_SECONDS = 60
ATTEMPTS = 8
MAX_RETRY_AFTER = 60.0
_backoff = wait_exponential_jitter(initial=0.25, max=8.0, jitter=0.25)


def default_rate(api_key: str) -> float:
    return SHARE * (LIVE_LIMIT if is_live_key(api_key) else TEST_LIMIT)


def plan(since: datetime, now: datetime, parallel: int) -> list[tuple[int, int | None]]:
    """Segments (created[gte], created[lt]) of [since, now], newest first; one if `parallel` is
    1, so that a sequential run reads exactly as Stripe's plain listing does."""
    gte, end = int(since.timestamp()), int(now.timestamp()) + 1
    wanted = parallel * SEGMENTS_PER_THREAD if parallel > 1 else 1
    count = max(1, min(wanted, (end - gte) // MIN_SEGMENT_SECONDS))
    cuts = [gte + (end - gte) * i // count for i in range(count + 1)]
    return [(cuts[i], cuts[i + 1] if i < count - 1 else None) for i in reversed(range(count))]


def _header(error: BaseException, name: str) -> str | None:
    headers = getattr(error, "headers", None) or {}
    return next((str(v) for k, v in headers.items() if str(k).lower() == name), None)


def _transient(error: BaseException) -> bool:
    import stripe

    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = getattr(error, "http_status", None)
    if isinstance(error, stripe.StripeError) and isinstance(status, int) and status >= 500:
        return _header(error, "stripe-should-retry") != "false"
    return False


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    after = _header(error, "retry-after") if error is not None else None
    try:
        told = min(float(after), MAX_RETRY_AFTER) if after else 0.0
    except ValueError:
        told = 0.0
    return max(told, _backoff(state))


@dataclass
class Stats:
    requests: int = 0
    rate_limited: int = 0  # 429s answered (and retried)
    pages: int = 0
    fetched: int = 0  # of the whole run
    finished: int = 0  # segments finished by this invocation
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)


class Fetcher:
    def __init__(self, settings: Settings, run: store.Row, parallel: int, rate: float) -> None:
        assert settings.stripe_api_key is not None
        self.settings, self.run, self.parallel = settings, run, parallel
        # rate + burst requests at most in any second: a burst of one keeps that under the limit.
        self.bucket = TokenBucket(rate, burst=1)
        self.stats = Stats(fetched=int(run["fetched"]))
        self.stop = threading.Event()
        self.params: dict[str, Any] = {"limit": PAGE_SIZE}
        if run["types"]:
            self.params["types"] = list(run["types"])
        if run["undelivered_only"]:
            self.params["delivery_success"] = False
        if run["account"]:
            self.params["stripe_account"] = run["account"]

    def fetch(self, conn: store.Connection) -> Stats:
        run = self.run
        since = int(run["since"].timestamp())
        started = run["cursor"] is not None or int(run["fetched"]) > 0  # before segments
        bounds = (
            [(since, None)] if started else plan(run["since"], datetime.now(UTC), self.parallel)
        )
        segments = store.plan_segments(conn, run["id"], bounds, int(run["fetched"]), run["cursor"])
        todo = deque(s for s in segments if not s["done"])
        self.total, self.done_before = len(segments), len(segments) - len(todo)
        threads = max(1, min(self.parallel, len(todo)))
        with ThreadPoolExecutor(threads, thread_name_prefix="backfill") as pool:
            futures = [pool.submit(self._work, todo) for _ in range(threads)]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            except KeyboardInterrupt:
                self.stop.set()
                raise click.ClickException(
                    f"interrupted; {self.stats.fetched} fetched so far, "
                    "run backfill again to resume"
                ) from None
            finally:
                self.stop.set()  # the others finish the page they are reading, and stop
        for future in futures:
            future.result()
        store.finish_fetching(conn, run["id"])
        return self.stats

    def _client(self) -> Any:
        import stripe

        settings = self.settings
        bases: Any = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        return stripe.StripeClient(
            str(settings.stripe_api_key),
            base_addresses=bases,
            max_network_retries=0,  # tenacity retries, in _list
            http_client=stripe.RequestsClient(timeout=30),
        )

    def _work(self, todo: deque[store.Row]) -> None:
        client = self._client()
        with store.session(self.settings.database_url) as conn:
            while not self.stop.is_set():
                try:
                    segment = todo.popleft()  # deque's popleft is atomic
                except IndexError:
                    return
                try:
                    self._segment(client, conn, segment)
                except BaseException:
                    self.stop.set()
                    raise

    def _segment(self, client: Any, conn: store.Connection, segment: store.Row) -> None:
        params = {**self.params, "created": {"gte": segment["gte"]}}
        if segment["lt"] is not None:
            params["created"]["lt"] = segment["lt"]
        cursor: str | None = segment["cursor"]
        while not self.stop.is_set():
            if cursor:
                params["starting_after"] = cursor
            body = self._list(client, params)
            events = [e for e in body.get("data") or [] if isinstance(e, dict)]
            payloads = [orjson.dumps(e).decode() for e in events]
            cursor = events[-1]["id"] if events else cursor
            last = not events or not body.get("has_more")
            store.save_page(conn, self.run["id"], segment["segment"], payloads, cursor, last)
            self.stats.add(pages=1, fetched=len(payloads), finished=int(last))
            click.echo(
                f"fetched {self.stats.fetched} event(s), "
                f"{self.done_before + self.stats.finished}/{self.total} segment(s) done",
                err=True,
            )
            if last:
                return

    def _list(self, client: Any, params: dict[str, Any]) -> dict[str, Any]:
        import stripe

        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(ATTEMPTS),
            wait=_wait,
            reraise=True,
        )
        response: Any = None
        try:
            for attempt in retrying:
                with attempt:
                    self.bucket.take()
                    self.stats.add(requests=1)
                    try:
                        response = client.raw_request("get", "/v1/events", **params)
                    except stripe.RateLimitError:
                        self.stats.add(rate_limited=1)
                        raise
        except stripe.StripeError as e:
            raise click.ClickException(
                f"Stripe refused the events list ({error_line(e, with_type=False)}); "
                f"{self.stats.fetched} fetched so far, run backfill again to resume"
            ) from e
        data = response.data if response is not None else None
        return data if isinstance(data, dict) else {}
