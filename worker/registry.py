"""Map event types to handlers.

A handler takes the open transaction and the event. It runs inside the transaction that also
marks the event `processed`, so its writes and the status change commit together, or not at all.

    from worker.registry import handles

    @handles("invoice.paid")
    def credit_account(tx: Tx, event: Event) -> None:
        tx.execute("UPDATE ... WHERE ...", (...,))

Handlers run in registration order: the billing mirror's first, then users' own modules
(`USER_HANDLERS`). An event type with no handler is marked `ignored`.

Thin events (`event.kind == "thin"`, e.g. `v1.invoice.paid`) are handled the same way: before
their handlers run, the worker reads the related object from Stripe, and `event.object` is that
object; `event.previous_attributes` comes from the event's `changes` (read from Stripe when a
handler asks and the notification does not carry them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, LiteralString

import psycopg
import stripe
from psycopg.rows import DictRow

from shared.settings import Settings


class NotFetched(RuntimeError):
    """A thin event's object was asked for before it was read from Stripe."""


@dataclass
class Fetched:
    """What the worker read from Stripe for a thin event (see `worker.thin`)."""

    object: dict[str, Any]
    # When it was read: the row it writes is as of then.
    read_at: datetime
    # Reads the whole event (`GET /v2/core/events/{id}`), for its `changes`.
    load_event: Callable[[], Mapping[str, Any]] | None = None
    _event: Mapping[str, Any] | None = None

    def event(self) -> Mapping[str, Any]:
        if self._event is None:
            if self.load_event is None:
                raise NotFetched("the thin event itself cannot be read from Stripe")
            self._event = self.load_event()
        return self._event


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
    kind: str = "snapshot"  # or "thin"
    endpoint: str | None = None
    # A thin event's snapshot twin (Stripe's `snapshot_event`).
    snapshot_event: str | None = None
    # A thin event's reads from Stripe, set before its handlers run.
    fetched: Fetched | None = field(default=None, repr=False, compare=False)

    @property
    def thin(self) -> bool:
        return self.kind == "thin"

    @property
    def object(self) -> dict[str, Any]:
        """The event's object: a snapshot's `data.object`; a thin event's related object, as
        read from Stripe before the handlers ran."""
        if self.thin:
            if self.fetched is None:
                raise NotFetched(f"thin event {self.id}: its related object was not read")
            return self.fetched.object
        obj: dict[str, Any] = self.payload["data"]["object"]
        return obj

    @property
    def previous_attributes(self) -> dict[str, Any]:
        """What changed, as it was before: a snapshot's `data.previous_attributes`; a thin
        event's `changes.before`."""
        if self.thin:
            before = self.changes.get("before")
            return before if isinstance(before, dict) else {}
        prev = self.payload["data"].get("previous_attributes")
        return prev if isinstance(prev, dict) else {}

    @property
    def changes(self) -> dict[str, Any]:
        """A thin event's `changes` (`before` and `after`), from its notification or else read
        from Stripe (`GET /v2/core/events/{id}`) on first use; a snapshot's: none."""
        if not self.thin:
            return {}
        changes = self.payload.get("changes")
        if not isinstance(changes, dict) and self.fetched is not None:
            changes = self.fetched.event().get("changes")
        return changes if isinstance(changes, dict) else {}

    @property
    def related_object(self) -> dict[str, Any] | None:
        """A thin event's `related_object` (`id`, `type`, `url`); None for a snapshot."""
        related = self.payload.get("related_object") if self.thin else None
        return related if isinstance(related, dict) else None

    @property
    def read_at(self) -> datetime | None:
        """When a thin event's object was read from Stripe; None for a snapshot."""
        return self.fetched.read_at if self.fetched is not None else None

    @property
    def as_of(self) -> datetime:
        """The moment `object` shows: a snapshot's `created`; for a thin event, its read (never
        before the event's `created`: our clock may lag Stripe's)."""
        read_at = self.read_at
        return max(read_at, self.created) if read_at is not None else self.created

    @property
    def snapshot_type(self) -> str:
        """The snapshot type of a v1 resource's thin event (`v1.invoice.paid` -> `invoice.paid`);
        any other event's own type."""
        return self.type.removeprefix("v1.") if self.thin else self.type

    @property
    def twin_key(self) -> str:
        """The id a thin event and its snapshot twin share (the snapshot's): an idempotency key
        for effects that must happen once per pair."""
        return self.snapshot_event or self.id


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
        self._thin: dict[Handler, Handler] = {}  # also_thin's wrappers
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

    def also_thin(self, fn: Handler) -> Handler:
        """Register `fn`, already registered for snapshot types, for their v1 thin events too
        (`invoice.paid` -> `v1.invoice.paid`): it sees them under their snapshot type, with the
        object read from Stripe. Call it after `handles`."""
        types = [t for t, fns in self._handlers.items() if fn in fns and "." in t]
        thin_types = [f"v1.{t}" for t in types if not t.startswith(("v1.", "v2."))]
        if not thin_types:
            raise ValueError(f"{fn.__qualname__} handles no snapshot type")

        as_snapshot = self._thin.get(fn)
        if as_snapshot is None:

            def as_snapshot(tx: Tx, event: Event) -> None:
                fn(tx, replace(event, type=event.snapshot_type))

            as_snapshot.__qualname__ = as_snapshot.__name__ = f"{fn.__qualname__}[thin]"
            self._thin[fn] = as_snapshot
        self.handles(*thin_types)(as_snapshot)
        return fn

    def handled_types(self) -> set[str]:
        return {t for t, fns in self._handlers.items() if fns}

    def unregister(self, fn: Handler) -> None:
        thin = self._thin.pop(fn, None)
        for bucket in self._handlers.values():
            for registered in (fn, thin):
                if registered in bucket:
                    bucket.remove(registered)


REGISTRY = Registry()
handles = REGISTRY.handles
also_thin = REGISTRY.also_thin
on_sweep = REGISTRY.on_sweep
use_transport = REGISTRY.use_transport
