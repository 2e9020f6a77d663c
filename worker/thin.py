"""Thin events: read what their handlers need from Stripe before they run.

A thin event notification (`v1.invoice.paid`, `v2.core.account.updated`, ...) names its object
(`related_object.url`) instead of carrying it. Before the handlers of a thin event run, the
worker reads that object with STRIPE_API_KEY, in the event's account when it has one
(`Stripe-Account` for a v1 path, `Stripe-Context` for a v2 one, as Stripe's SDKs send them),
retrying connection errors, 429 and 5xx a few times. The event itself (`GET
/v2/core/events/{id}`, for its `changes`) is read only when a handler asks for them. A thin
event with no handler is never read: it finishes `ignored`.

Any other failure (no STRIPE_API_KEY, an invalid key, an object Stripe no longer has) fails the
attempt like a handler's error: retried with the worker's backoff, then dead.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import stripe

from shared.errors import HandlerError
from worker.registry import Event, Fetched
from worker.transient import transient

NO_API_KEY = (
    "{type} is a thin event: its handlers need its related object from Stripe's API, "
    "and STRIPE_API_KEY is not set"
)


class ThinEventError(HandlerError):
    """What a thin event needs from Stripe cannot be read."""


def prepare(event: Event, api: stripe.StripeClient | None) -> Event:
    """The thin event with its related object read from Stripe (and its whole event on demand)."""
    if api is None:
        raise ThinEventError(NO_API_KEY.format(type=event.type))
    related = event.related_object or {}
    path = related.get("url")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ThinEventError(f"thin event {event.id}: its related_object has no API path")
    # Taken before the read: a later event of the object is never mistaken for an older one.
    read_at = datetime.now(UTC).replace(microsecond=0)
    obj = read(api, path, event)
    related_id = related.get("id")
    if isinstance(related_id, str) and obj.get("id") != related_id:
        raise ThinEventError(f"Stripe answered {path} with another object than {related_id}")
    load_event = functools.partial(read, api, f"/v2/core/events/{quote(event.id, safe='')}", event)
    return replace(event, fetched=Fetched(obj, read_at, load_event))


def read(api: stripe.StripeClient, path: str, event: Event) -> dict[str, Any]:
    """GET `path` for `event`, in its account; the JSON object Stripe answered."""
    options: dict[str, Any] = {"headers": {"Stripe-Request-Trigger": f"event={event.id}"}}
    if event.account:
        options["stripe_context" if path.startswith("/v2/") else "stripe_account"] = event.account
    try:
        data = _get(api, path, options)
    except stripe.InvalidRequestError as e:
        if e.http_status == 404:
            raise ThinEventError(f"Stripe has no {path} (404)") from e
        raise
    if not isinstance(data, dict):
        raise ThinEventError(f"Stripe answered {path} with something other than an object")
    return data


@transient(attempts=4, max_wait_s=2.0)
def _get(api: stripe.StripeClient, path: str, options: dict[str, Any]) -> Any:
    return api.raw_request("get", path, **options).data
