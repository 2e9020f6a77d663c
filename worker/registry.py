"""Map event types to handlers.

A handler takes the open transaction and the event. It runs inside the transaction that also
marks the event `processed`, so its writes and the status change commit together, or not at all.

    from worker.registry import handles

    @handles("invoice.paid")
    def credit_account(tx: Tx, event: Event) -> None:
        tx.execute("UPDATE ... WHERE ...", (...,))

Handlers run in registration order: the billing mirror's first, then users' own modules
(`USER_HANDLERS`). An event type with no handler is marked `ignored`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString

import psycopg
import stripe
from psycopg.rows import DictRow

from shared.settings import Settings


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    created: datetime
    livemode: bool
    api_version: str | None
    account: str | None
    ordering_key: str
    payload: Mapping[str, Any]
    attempt: int = 1

    @property
    def object(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.payload["data"]["object"]
        return obj

    @property
    def previous_attributes(self) -> dict[str, Any]:
        prev = self.payload["data"].get("previous_attributes")
        return prev if isinstance(prev, dict) else {}


@dataclass(frozen=True)
class Services:
    """What handlers may use besides the transaction, built once when the worker starts."""

    # A Stripe API client when STRIPE_API_KEY is set (re-fetching objects), else None.
    stripe: stripe.StripeClient | None = None
    # Sends notification ids to the delivery actor (after the commit); None: not sent.
    enqueue_notifications: Callable[[list[int]], None] | None = None


@dataclass
class Tx:
    """The open transaction a handler writes in, and what it may need besides."""

    conn: psycopg.Connection[DictRow]
    settings: Settings
    services: Services = field(default_factory=Services)
    # Handlers may leave notes for later handlers of the same event.
    scratch: dict[str, Any] = field(default_factory=dict)
    # Called by the worker after the transaction commits (e.g. enqueue a notification);
    # dropped if it rolls back. A failure here is logged, never undoes the commit.
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # Items handed to a function once after the commit, together with the same function's items
    # from the other events finished in that transaction (e.g. one message for all their
    # notifications). Dropped on rollback, like `after_commit`.
    deferred: list[tuple[Callable[[list[Any]], None], Any]] = field(default_factory=list)

    def defer(self, fn: Callable[[list[Any]], None], item: Any) -> None:
        self.deferred.append((fn, item))

    def execute(self, query: LiteralString, params: Any = None) -> psycopg.Cursor[DictRow]:
        return self.conn.execute(query, params)


Handler = Callable[[Tx, Event], None]


# Run by the sweeper on every pass, with the sweeper's settings and broker.
SweepHook = Callable[[Settings, Any], None]


class Registry:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        # Run by the sweeper on every pass, after its own work (e.g. unsent notifications).
        self.sweep_hooks: list[SweepHook] = []
        # How notifications leave, if not SMTP or the log (`send(message) -> str | None`).
        self.transport: Any = None

    def use_transport(self, transport: Any) -> None:
        """Plug in another notification transport (a webhook to your app...); None restores."""
        self.transport = transport

    def on_sweep(self, fn: SweepHook) -> SweepHook:
        if fn not in self.sweep_hooks:
            self.sweep_hooks.append(fn)
        return fn

    def handles(self, *event_types: str) -> Callable[[Handler], Handler]:
        if not event_types:
            raise ValueError("handles() needs at least one event type")

        def register(fn: Handler) -> Handler:
            for event_type in event_types:
                bucket = self._handlers.setdefault(event_type, [])
                if fn not in bucket:
                    bucket.append(fn)
            return fn

        return register

    def handlers_for(self, event_type: str) -> list[Handler]:
        return list(self._handlers.get(event_type, ()))

    def handled_types(self) -> set[str]:
        return {t for t, fns in self._handlers.items() if fns}

    def unregister(self, fn: Handler) -> None:
        for bucket in self._handlers.values():
            if fn in bucket:
                bucket.remove(fn)


REGISTRY = Registry()
handles = REGISTRY.handles
on_sweep = REGISTRY.on_sweep
use_transport = REGISTRY.use_transport
