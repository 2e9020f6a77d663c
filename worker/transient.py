"""Retry short transient failures inside a handler, in-process, before they fail the event.

A handler runs inside the event's transaction while its key is locked, so only calls to
*other* systems are worth retrying here (the Stripe API, an HTTP service, SMTP): a few quick
attempts with jittered backoff. Anything else, or a failure that outlasts them, raises: the
event's transaction rolls back and the event is retried later with the worker's backoff
(WORKER_MIN_BACKOFF_MS..WORKER_MAX_BACKOFF_MS), then dead-lettered. A PostgreSQL error is never
retried here: the transaction it happened in is gone.

    from worker.transient import transient

    @transient
    def fetch_subscription(subscription_id: str) -> stripe.Subscription:
        return client.subscriptions.retrieve(subscription_id)

    @transient(attempts=5, max_wait_s=1.0)
    def notify_crm(payload: dict) -> None: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar, overload

import psycopg
import stripe
import structlog
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_ATTEMPTS = 3
DEFAULT_MAX_WAIT_S = 2.0


def is_transient(error: BaseException) -> bool:
    """Connection problems, timeouts, Stripe's 429 and 5xx; never a database error."""
    if isinstance(error, psycopg.Error):
        return False
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(error, stripe.StripeError):
        status = error.http_status
        return status is not None and status >= 500
    return False


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    log.warning(
        "handler.transient_retry",
        function=getattr(state.fn, "__qualname__", "?"),
        attempt=state.attempt_number,
        error=type(error).__name__,
    )


@overload
def transient(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def transient(
    *, attempts: int = ..., max_wait_s: float = ..., when: Callable[[BaseException], bool] = ...
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def transient(
    fn: Callable[P, R] | None = None,
    /,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    when: Callable[[BaseException], bool] = is_transient,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry `fn` up to `attempts` times while it raises a transient error (`when`)."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        wrapped: Callable[P, R] = retry(
            retry=retry_if_exception(when),
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.1, max=max_wait_s),
            before_sleep=_log_retry,
            reraise=True,
        )(func)
        return wrapped

    return decorate(fn) if fn is not None else decorate
