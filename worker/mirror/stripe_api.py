"""Re-read subscriptions and invoices (and charges the mirror has not seen) from Stripe, when
STRIPE_API_KEY is set.

An event carries a snapshot from when it was created; the API returns the object as it is now.
Writing the current object makes the mirror right whatever order events arrive in.
Connection errors, 429 and 5xx are retried here with backoff (tenacity); anything else
(an invalid key, say) fails the event, and the worker retries it with its own backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe
import structlog
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared.settings import Settings

log = structlog.get_logger(__name__)

_PATHS = {
    "subscription": "/v1/subscriptions/",
    "invoice": "/v1/invoices/",
    "charge": "/v1/charges/",
}


def _transient(error: BaseException) -> bool:
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = getattr(error, "http_status", None)
    return isinstance(error, stripe.StripeError) and isinstance(status, int) and status >= 500


def make_client(settings: Settings) -> stripe.StripeClient | None:
    """The worker's Stripe client (built once at start); None when no key is configured."""
    if not settings.stripe_api_key:
        return None
    return stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else {},
        max_network_retries=0,  # tenacity retries, below
        http_client=stripe.RequestsClient(timeout=10),
    )


@retry(
    retry=retry_if_exception(_transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
    reraise=True,
)
def _get(api: stripe.StripeClient, path: str, account: str | None = None) -> Any:
    response = api.raw_request("get", path, **({"stripe_account": account} if account else {}))
    return response.data


def fetch(
    api: stripe.StripeClient | None, kind: str, object_id: str, account: str | None = None
) -> Mapping[str, Any] | None:
    """The current `kind` object (of the connected `account`, sent as Stripe-Account), or None
    without a client or when Stripe no longer has it."""
    if api is None or kind not in _PATHS or not object_id:
        return None
    try:
        data = _get(api, _PATHS[kind] + object_id, account)
    except stripe.InvalidRequestError as e:
        if e.http_status == 404:
            log.info("mirror.refetch_missing", kind=kind, object_id=object_id)
            return None
        raise
    if not isinstance(data, Mapping) or data.get("id") != object_id:
        raise ValueError(f"Stripe returned an unexpected body for {kind} {object_id}")
    return data
