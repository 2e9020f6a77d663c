"""Stripe's list endpoints for `reconcile`: every page (100 objects, `starting_after`), kept
under Stripe's rate limits by a token bucket, with progress on stderr."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from shared.errors import error_line
from shared.settings import Settings

PAGE_SIZE = 100
# Stripe allows 100 requests a second in live mode and 25 in test mode; stay below both.
LIVE_RATE, TEST_RATE = 80.0, 20.0
BURST = 5

_PATHS = {
    "customers": "/v1/customers",
    "subscriptions": "/v1/subscriptions",
    "invoices": "/v1/invoices",
}
# Subscriptions: `status=all`, or Stripe leaves the canceled ones out. Invoices: their payments
# (charge, payment intent) are not in the object unless expanded.
_PARAMS: dict[str, dict[str, Any]] = {
    "customers": {},
    "subscriptions": {"status": "all"},
    "invoices": {"expand": ["data.payments"]},
}


def is_live_key(api_key: str) -> bool:
    return api_key.startswith(("sk_live_", "rk_live_"))


class TokenBucket:
    """`rate` requests a second on average, at most `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.burst = rate, float(burst)
        self.clock, self.sleep = clock, sleep
        self.tokens = float(burst)
        self.at = clock()
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.rate
                self.sleep(wait)
                self.at = self.clock()
                self.tokens = 1.0
            self.tokens -= 1


@dataclass(frozen=True)
class Page:
    objects: list[dict[str, Any]]
    # When Stripe was asked (to the second, rounded down): the objects are at least that new.
    read_at: datetime


class StripeReader:
    def __init__(self, settings: Settings, bucket: TokenBucket | None = None) -> None:
        import stripe

        assert settings.stripe_api_key is not None
        bases: Any = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(
            settings.stripe_api_key, base_addresses=bases, max_network_retries=3
        )
        self.livemode = is_live_key(settings.stripe_api_key)
        # The client sends its pinned version: Stripe renders every object at it.
        self.api_version = str(stripe.api_version)
        self.bucket = bucket or TokenBucket(LIVE_RATE if self.livemode else TEST_RATE)
        self.requests = 0

    def _get(self, what: str, path: str, params: dict[str, Any]) -> tuple[Any, datetime]:
        import stripe

        self.bucket.take()
        self.requests += 1
        # Taken before asking: the answer is at least as new. An event created later (even in
        # this second) is applied over the object; an older one is not.
        asked_at = datetime.now(UTC).replace(microsecond=0)
        try:
            response = self.client.raw_request("get", path, **params)
        except stripe.StripeError as e:
            raise click.ClickException(
                f"Stripe refused {what} ({error_line(e, with_type=False)})"
            ) from e
        return response.data, asked_at

    def pages(self, table: str, since: datetime | None) -> Iterator[Page]:
        """Every object of `table` (created at or after `since`), newest first, page by page."""
        params: dict[str, Any] = {"limit": PAGE_SIZE, **_PARAMS[table]}
        if since is not None:
            params["created"] = {"gte": int(since.timestamp())}
        listed = 0
        while True:
            body, read_at = self._get(f"the {table} list", _PATHS[table], params)
            objects = [o for o in body.get("data") or [] if isinstance(o, dict) and o.get("id")]
            listed += len(objects)
            click.echo(f"{table}: {listed} listed", err=True)
            yield Page(objects, read_at)
            if not objects or not body.get("has_more"):
                return
            params["starting_after"] = objects[-1]["id"]

    def retrieve(self, table: str, object_id: str) -> Page | None:
        """One object as it is now (a deleted customer says `deleted: true`); None: unknown."""
        import stripe

        try:
            body, read_at = self._get(
                f"{table} {object_id}", f"{_PATHS[table]}/{quote(object_id, safe='')}", {}
            )
        except click.ClickException as e:
            cause = e.__cause__
            if isinstance(cause, stripe.InvalidRequestError) and cause.http_status == 404:
                return None
            raise
        if not isinstance(body, dict) or body.get("id") != object_id:
            raise click.ClickException(f"Stripe returned an unexpected body for {object_id}")
        return Page([body], read_at)
