"""What every reliability scenario uses: signed senders that behave like Stripe (an unanswered
request is sent again), the figures a scenario reports, and the scan of what processes logged.

Figures go to the JSON lines file named by RELIABILITY_RESULTS when it is set (the report,
`python -m tests.reliability.report`, sets it and renders docs/RELIABILITY.md from it).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row

from tests.procs import Running, run_server, run_sweeper, run_worker
from tests.support import sign

RESULTS_ENV = "RELIABILITY_RESULTS"


@dataclass
class Delivery:
    """Every answer one event got, in order (0: no answer: connection refused or cut)."""

    event_id: str
    statuses: list[int] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return 200 in self.statuses


class Sender:
    """Sends signed events to a receiver from `concurrency` threads; a request that gets no
    answer, or a 503, is sent again (as Stripe does) until `deadline_s` has passed."""

    def __init__(self, base_url: str, secret: str, concurrency: int = 32) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.secret = secret
        self.concurrency = concurrency
        self.deliveries: dict[str, Delivery] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []

    def _post(self, body: bytes) -> int:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            with self._lock:
                self._opened.append(conn)
        headers = {"Stripe-Signature": sign(body, self.secret), "Content-Type": "application/json"}
        try:
            conn.request("POST", "/webhooks/stripe", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                self._local.conn = None
            return response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            return 0

    def send_one(self, event: dict[str, Any], deadline: float) -> None:
        body = json.dumps(event).encode()
        with self._lock:
            delivery = self.deliveries.setdefault(event["id"], Delivery(event["id"]))
        while True:
            status = self._post(body)
            with self._lock:
                delivery.statuses.append(status)
            if status not in (0, 503) or time.monotonic() > deadline:
                return
            time.sleep(0.05)  # a client's pause before it sends again, not a wait for state

    def send_all(
        self, events: Sequence[dict[str, Any]], deadline_s: float = 60.0, *, in_order: bool = True
    ) -> None:
        """Send every event; with `in_order`, each customer's events one after another in the
        order given (customers in parallel), so arrival order is creation order per key and
        processing order can be checked exactly; else all in parallel."""
        deadline = time.monotonic() + deadline_s
        groups: dict[str, list[dict[str, Any]]] = {}
        for n, event in enumerate(events):
            key = str(event["data"]["object"].get("customer")) if in_order else str(n)
            groups.setdefault(key, []).append(event)

        def send_group(group: list[dict[str, Any]]) -> None:
            for event in group:
                self.send_one(event, deadline)

        try:
            with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
                list(pool.map(send_group, groups.values()))
        finally:
            with self._lock:
                for conn in self._opened:
                    conn.close()
                self._opened.clear()

    def statuses(self) -> list[int]:
        return [s for d in self.deliveries.values() for s in d.statuses]

    def unexpected_5xx(self) -> int:
        return sum(1 for s in self.statuses() if s >= 500 and s != 503)


@dataclass
class Figures:
    scenario: str
    what: str
    sent: int = 0
    answered_200: int = 0
    stored: int = 0
    finished: int = 0
    duplicate_effects: int = 0
    lost: int = 0
    unexpected_5xx: int = 0
    notes: str = ""
    seconds: float = 0.0

    def record(self) -> None:
        path = os.environ.get(RESULTS_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(self)) + "\n")


def rows(url: str, statement: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return list(conn.execute(statement, params).fetchall())


def tally(
    figures: Figures, url: str, event_ids: Iterable[str], sender: Sender | None = None
) -> Figures:
    """Fill the figures from the database: what is stored and finished of `event_ids`, the
    effects applied more than once, and what was acknowledged yet is not finished (lost)."""
    ids = sorted(set(event_ids))
    found = rows(url, "SELECT id, status FROM stripe_events WHERE id = ANY(%s)", (ids,))
    status = {r["id"]: r["status"] for r in found}
    effects = rows(
        url,
        "SELECT event_id, count(*) AS n FROM rel_effects WHERE event_id = ANY(%s) GROUP BY 1",
        (ids,),
    )
    figures.sent = len(ids)
    figures.stored = len(status)
    figures.finished = sum(1 for s in status.values() if s != "pending")
    figures.duplicate_effects = sum(r["n"] - 1 for r in effects if r["n"] > 1)
    if sender is not None:
        acked = [d.event_id for d in sender.deliveries.values() if d.acknowledged]
        figures.answered_200 = len(acked)
        figures.unexpected_5xx = sender.unexpected_5xx()
        figures.lost = sum(1 for i in acked if status.get(i, "pending") == "pending")
    else:
        figures.answered_200 = figures.stored
        figures.lost = sum(1 for i in ids if status.get(i, "pending") == "pending")
    return figures


# What must never reach a log line: Stripe keys and signing secrets, e-mail addresses, card
# numbers. Card fingerprints and e-mails of the events sent are checked by value as well.
_NEVER = [
    re.compile(r"whsec_[A-Za-z0-9]{4,}"),
    re.compile(r"\b[sr]k_(live|test)_[A-Za-z0-9]{4,}"),
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.-]*[A-Za-z]{2,}"),
    re.compile(r"\b(?:4242|4000|5555)\d{12}\b"),
    re.compile(r"Failing row contains"),
    re.compile(r'"last4"'),
]


def sensitive_values(events: Iterable[dict[str, Any]]) -> set[str]:
    """Card fingerprints and e-mail addresses found anywhere in the events' payloads."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("fingerprint", "email") and isinstance(item, str) and len(item) > 5:
                    found.add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for event in events:
        walk(event)
    return found


def leaks(processes: Iterable[Running], values: Iterable[str] = ()) -> list[str]:
    """Lines of the processes' logs that carry a secret, an address or card data."""
    literal = [v for v in values if v]
    bad = []
    for proc in processes:
        for line in proc.logs().splitlines():
            if any(p.search(line) for p in _NEVER) or any(v in line for v in literal):
                bad.append(f"{proc.name}: {line[:300]}")
    return bad


def worker_processes(supervisor: Running) -> list[int]:
    """The Dramatiq worker processes under `python -m worker` (the supervisor's grandchildren,
    the ones that run handlers)."""
    tree = supervisor.descendants()
    parents = {pid: _parent(pid) for pid in tree}
    mains = [pid for pid, parent in parents.items() if parent == supervisor.pid]
    return sorted(pid for pid, parent in parents.items() if parent in mains)


def _parent(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def events_for(
    prefix: str, customers: int, per_customer: int, event_type: str, **meta: object
) -> list[dict[str, Any]]:
    """`per_customer` events for each of `customers` keys, a second apart, in creation order."""
    from tests.worker.support import T0, make_event

    return [
        make_event(
            f"evt_{prefix}_{c:03d}_{i:03d}", f"cus_{prefix}_{c:03d}", T0 + i, event_type, **meta
        )
        for c in range(customers)
        for i in range(per_customer)
    ]


class Stack:
    """The service as `make run` starts it (web, worker, sweeper), each under its role, any of
    which a scenario can kill and start again; every process it ran is kept for the log scan."""

    def __init__(self, env: dict[str, str], urls: dict[str, str], port: int) -> None:
        self.env, self.urls, self.port = env, urls, port
        self.base_url = f"http://127.0.0.1:{port}"
        self.ran: list[Running] = []
        self._open: dict[str, contextlib.ExitStack] = {}

    def start(self, kind: str, **extra: Any) -> Running:
        stack = contextlib.ExitStack()
        if kind == "web":
            env = {**self.env, "DATABASE_URL": self.urls["web"], "PORT": str(self.port)}
            argv = [sys.executable, "-m", "ingest"]
            running = stack.enter_context(run_server("web", argv, env, self.port))
        elif kind == "worker":
            env = {**self.env, "DATABASE_URL": self.urls["worker"]}
            processes, threads = extra.get("processes", 2), extra.get("threads", 4)
            running = stack.enter_context(run_worker(env, processes=processes, threads=threads))
        else:
            env = {**self.env, "DATABASE_URL": self.urls["worker"]}
            running = stack.enter_context(run_sweeper(env))
        self._open[kind] = stack
        self.ran.append(running)
        return running

    def stop(self, kind: str) -> None:
        stack = self._open.pop(kind, None)
        if stack is not None:
            stack.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *_: object) -> None:
        for kind in list(self._open):
            self.stop(kind)


def finished(url: str, n: int) -> bool:
    """At least `n` events are finished (processed, ignored or dead)."""
    found = rows(url, "SELECT count(*) AS n FROM stripe_events WHERE status <> 'pending'")
    return bool(found[0]["n"] >= n)


def assert_clean(figures: Figures, stack: Stack, url: str) -> None:
    """Nothing lost or applied twice, no unexpected 5xx, everything finished in creation order
    per key, no secret in any log line; then the figures are recorded."""
    from tests.worker.support import assert_creation_order

    assert figures.lost == 0, figures
    assert figures.duplicate_effects == 0, figures
    assert figures.unexpected_5xx == 0, figures
    assert figures.finished == figures.sent, figures
    assert_creation_order(url)
    assert leaks(stack.ran) == []
    figures.record()
