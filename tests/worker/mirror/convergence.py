"""What "the same end" means for the convergence tests, and how deliveries are made in-process:
one connection pool, one Engine (the workers' own), events stored as the receiver stores them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import worker.mirror.handlers  # noqa: F401  (registers the mirror's handlers)
from ingest.event import event_row, ordering_key
from ingest.storage import insert_events_sync
from shared.db import Connection, make_pool
from shared.settings import Settings
from tests.worker.mirror import lifecycles as lc
from worker.engine import Engine
from worker.inflight import Outcome
from worker.registry import Services

TABLES = (
    "customers",
    "subscriptions",
    "invoices",
    "charges",
    "disputes",
    "refunds",
    "checkout_sessions",
)
# Access decisions at these instants: during the grace periods, after them, at the end.
INSTANTS = [
    datetime.fromtimestamp(t, UTC)
    for t in [lc.T0 + d * lc.DAY for d in (1, 15, 33, 36, 45)] + [lc.END]
]
NOTIFICATIONS = (
    "SELECT event_id, kind, customer_id, payload, awaits_charge FROM notifications "
    "ORDER BY event_id, kind"
)
RESET = "DELETE FROM stripe_events; DELETE FROM notifications; " + " ".join(
    f"DELETE FROM {t};" for t in TABLES
)

State = dict[str, list[dict[str, Any]]]


def state(conn: Connection) -> State:
    """Every mirror row (without our own `updated_at`), the access decisions at INSTANTS and the
    notifications, each list sorted."""
    found: State = {}
    for table in TABLES:
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()  # type: ignore[arg-type]
        found[table] = [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]
    found["access"] = [
        {"at": at, **r}
        for at in INSTANTS
        for r in conn.execute(
            "SELECT * FROM customer_access_at(%s) ORDER BY customer_id", (at,)
        ).fetchall()
    ]
    found["notifications"] = conn.execute(NOTIFICATIONS).fetchall()
    conn.commit()
    return found


def merged(states: Iterable[State]) -> State:
    """The state of lifecycles processed together: they share no object, so the union."""
    out: State = {}
    for one in states:
        for key, rows in one.items():
            out.setdefault(key, []).extend(rows)
    sort = {
        "access": lambda r: (r["at"], r["customer_id"]),
        "notifications": lambda r: (r["event_id"], r["kind"]),
    }
    for key, rows in out.items():
        rows.sort(key=sort.get(key, lambda r: r["id"]))
    return out


@dataclass
class Deliverer:
    """Stores and processes events against one database, reusing connections across examples."""

    settings: Settings
    threads: int = 3
    retries: list[tuple[str, int | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        size = self.threads + 1
        self.pool = make_pool(self.settings.database_url, min_size=1, max_size=size, name="conv")
        self.stores = make_pool(self.settings.database_url, min_size=1, max_size=size, name="st")
        self.engine = Engine(
            pool=self.pool,
            settings=self.settings,
            enqueue=lambda event_id, delay: self.retries.append((event_id, delay)),
            services=Services(),
        )

    def open(self) -> None:
        self.pool.open(wait=True)
        self.stores.open(wait=True)

    def close(self) -> None:
        self.pool.close()
        self.stores.close()

    def reset(self) -> None:
        with self.stores.connection() as conn:
            conn.execute(RESET)  # type: ignore[arg-type]

    def state(self) -> State:
        with self.stores.connection() as conn:
            return state(conn)

    def store(self, events: Sequence[Mapping[str, Any]]) -> set[str]:
        rows = [event_row(dict(e), json.dumps(e)) for e in events]
        with self.stores.connection() as conn:
            return insert_events_sync(conn, rows)

    def replay(self, event_id: str) -> None:
        """What `stripe-ingest replay --force` does to a processed event."""
        with self.stores.connection() as conn:
            conn.execute(
                "UPDATE stripe_events SET status = 'pending', attempts = 0, processed_at = NULL,"
                " process_seq = NULL WHERE id = %s AND status = 'processed'",
                (event_id,),
            )

    def deliver(self, batch: Sequence[Mapping[str, Any]], *, replay: bool = False) -> None:
        """As the receiver does: store, then one message naming the batch's events."""
        self.store(batch)
        if replay:
            for event in batch:
                self.replay(event["id"])
        outcomes: list[Outcome]
        if len(batch) == 1:
            outcomes = self.engine.handle(batch[0]["id"], ordering_key(batch[0]))
        else:
            outcomes = self.engine.handle_many([(e["id"], ordering_key(e)) for e in batch])
        failed = [o for o in outcomes if o.status not in ("processed", "ignored")]
        assert not failed, failed

    def one_at_a_time(self, deliveries: Sequence[tuple[Mapping[str, Any], bool]]) -> None:
        for event, replay in deliveries:
            self.deliver([event], replay=replay)

    def concurrently(
        self, deliveries: Sequence[tuple[Mapping[str, Any], bool]], batch: int
    ) -> None:
        """`threads` senders, each taking every n-th delivery, in messages of up to `batch`."""
        streams = [list(deliveries[i :: self.threads]) for i in range(self.threads)]
        start = threading.Barrier(self.threads)
        errors: list[BaseException] = []

        def send(stream: list[tuple[Mapping[str, Any], bool]]) -> None:
            try:
                start.wait(timeout=10)
                for i in range(0, len(stream), batch):
                    chunk = stream[i : i + batch]
                    replays = [e for e, again in chunk if again]
                    self.deliver([e for e, _ in chunk])
                    for event in replays:
                        self.deliver([event], replay=True)
            except BaseException as e:  # reported below, in the test's thread
                errors.append(e)

        workers = [threading.Thread(target=send, args=(s,)) for s in streams]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert not errors, errors
        assert not any(w.is_alive() for w in workers)

    def pending(self) -> int:
        with self.stores.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM stripe_events WHERE status <> 'processed'"
            ).fetchone()
        assert row is not None
        return int(row["n"])


@contextmanager
def deliverer(settings: Settings, threads: int = 3) -> Iterator[Deliverer]:
    d = Deliverer(settings, threads)
    d.open()
    try:
        yield d
    finally:
        d.close()


def in_order(d: Deliverer, life: lc.Lifecycle) -> State:
    """The reference: each event once, in Stripe's order, each processed before the next."""
    d.reset()
    d.one_at_a_time([(e, False) for e in life.events])
    found = d.state()
    d.reset()
    return found
