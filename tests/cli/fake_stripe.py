"""A local stand-in for Stripe's API: a real HTTP server with Stripe's paging rules (newest first,
`limit` up to 100, `starting_after`, `created[gte]`), which records every query it answers.

- `GET /v1/events`: also `created[lt]`, `types[]` and `delivery_success`; with a
  `Stripe-Account` header, the events of that connected account (`connected`), none of the
  platform's. Pages are cut from a sorted index (built once per list, again when its length
  changes: replace a list rather than edit its events), so a fake of 50,000 events answers as
  fast as one of 50.
- Like Stripe, optionally: `latency` (each request answered after a uniform random delay in that
  range, seconds) and `rate_limit` (requests a second, counted per wall-clock second: beyond it,
  429 with `Retry-After: 1`). It counts what a client relies on: `served` event pages,
  `rate_limited` 429s, `busiest_second` (most requests that arrived in one second) and
  `max_in_flight` (most requests being answered at once).
- `GET /v1/customers`, `/v1/subscriptions`, `/v1/invoices`: the objects in `objects`; deleted
  customers are not listed, and subscriptions only with `status=all` include canceled ones (as at
  Stripe). `GET /v1/<those>/<id>`: one object, `{"id", "object", "deleted": true}` for a deleted
  customer, 404 for an unknown id.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_RATE_LIMITED = {
    "error": {
        "type": "invalid_request_error",
        "code": "rate_limit",
        "message": "Too many requests hit the API too quickly.",
    }
}
_LISTED = ("customers", "subscriptions", "invoices")
# What Stripe's subscription list leaves out unless asked for `status=all`.
_ENDED = ("canceled", "incomplete_expired")


def _missing(what: str) -> tuple[int, Any]:
    return 404, {"error": {"type": "invalid_request_error", "message": f"No such {what}"}}


def _page(path: str, matching: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
    matching = sorted(matching, key=lambda o: (o["created"], o["id"]), reverse=True)
    start = 0
    after = params.get("starting_after")
    if after:
        start = next(i for i, o in enumerate(matching) if o["id"] == after) + 1
    limit = min(int(params.get("limit", "10")), 100)
    return {
        "object": "list",
        "url": path,
        "has_more": start + limit < len(matching),
        "data": matching[start : start + limit],
    }


class _Index:
    """Events newest first (created, then id, descending), with where each id and second is."""

    def __init__(self, listed: list[dict[str, Any]]) -> None:
        self.events = sorted(listed, key=lambda e: (e["created"], e["id"]), reverse=True)
        self.position = {e["id"]: i for i, e in enumerate(self.events)}
        self.ascending = [-int(e["created"]) for e in self.events]

    def window(self, gte: int, lt: str | None) -> tuple[int, int]:
        """The slice of events created in [gte, lt)."""
        start = bisect.bisect_right(self.ascending, -int(lt)) if lt is not None else 0
        return start, bisect.bisect_right(self.ascending, -gte)


@dataclass
class FakeStripe:
    events: list[dict[str, Any]] = field(default_factory=list)  # any order; newest first
    # Connected accounts' events, by account id (listed with a Stripe-Account header).
    connected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    undelivered: set[str] = field(default_factory=set)
    # Objects of the list endpoints, by name ("customers", "subscriptions", "invoices").
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deleted_customers: set[str] = field(default_factory=set)
    api_key: str = "sk_test_fake"
    queries: list[list[tuple[str, str]]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # the path of each query
    accounts: list[str | None] = field(default_factory=list)  # each query's Stripe-Account
    fail_on_request: int | None = None  # 1-based request number answered with a 500
    latency: tuple[float, float] = (0.0, 0.0)
    rate_limit: int | None = None
    served: int = 0
    rate_limited: int = 0
    max_in_flight: int = 0
    per_second: Counter[int] = field(default_factory=Counter)
    url: str = ""
    in_flight: int = 0
    first_at: float | None = None  # time.monotonic() of the first request's arrival
    last_at: float | None = None  # and of the last answer
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _index: dict[int, _Index] = field(default_factory=dict, repr=False)

    @property
    def busiest_second(self) -> int:
        return max(self.per_second.values(), default=0)

    def arrive(self) -> bool:
        """Count a request in; False: it is over the rate limit (answer 429)."""
        with self._lock:
            second = int(time.time())
            if self.first_at is None:
                self.first_at = time.monotonic()
            self.per_second[second] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            over = self.rate_limit is not None and self.per_second[second] > self.rate_limit
            self.rate_limited += over
            return not over

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
            self.last_at = time.monotonic()

    def _sorted(self, listed: list[dict[str, Any]]) -> _Index:
        with self._lock:
            index = self._index.get(id(listed))
            if index is None or len(index.events) != len(listed):
                index = self._index[id(listed)] = _Index(listed)
            return index

    def answer(
        self,
        path: str,
        query: list[tuple[str, str]],
        auth: str | None,
        account: str | None = None,
    ) -> tuple[int, Any]:
        with self._lock:
            self.queries.append(query)
            self.paths.append(path)
            self.accounts.append(account)
            number = len(self.queries)
        if auth != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
        if self.fail_on_request == number:
            return 500, {"error": {"type": "api_error", "message": "injected outage"}}
        parts = path.strip("/").split("/")
        if len(parts) in (2, 3) and parts[0] == "v1" and parts[1] in _LISTED:
            return self._objects(path, parts[1], parts[2] if len(parts) == 3 else None, query)
        if path != "/v1/events":
            return _missing("path")
        params = dict(query)
        types = {v for k, v in query if k == "types[]" or k.startswith("types[")}
        undelivered = params.get("delivery_success") == "false"
        listed = self.connected.get(account, []) if account else self.events
        index = self._sorted(listed)
        start, end = index.window(int(params.get("created[gte]", "0")), params.get("created[lt]"))
        after = params.get("starting_after")
        if after:
            if after not in index.position:
                return _missing(f"event: {after}")
            start = max(start, index.position[after] + 1)
        limit = min(int(params.get("limit", "10")), 100)
        data: list[dict[str, Any]] = []
        has_more = False
        for event in index.events[start:end]:
            if (not types or event["type"] in types) and (
                not undelivered or event["id"] in self.undelivered
            ):
                if len(data) == limit:
                    has_more = True
                    break
                data.append(event)
        with self._lock:
            self.served += 1
        return 200, {"object": "list", "url": path, "has_more": has_more, "data": data}

    def _objects(
        self, path: str, name: str, object_id: str | None, query: list[tuple[str, str]]
    ) -> tuple[int, Any]:
        known = self.objects.get(name, [])
        if object_id is not None:
            if name == "customers" and object_id in self.deleted_customers:
                return 200, {"id": object_id, "object": "customer", "deleted": True}
            found = next((o for o in known if o["id"] == object_id), None)
            return (200, found) if found is not None else _missing(f"{name[:-1]}: {object_id}")
        params = dict(query)
        gte = int(params.get("created[gte]", "0"))
        status = params.get("status")
        matching = [
            o
            for o in known
            if o["created"] >= gte
            and not (name == "customers" and o["id"] in self.deleted_customers)
            and not (name == "subscriptions" and status is None and o["status"] in _ENDED)
            and not (status not in (None, "all") and o.get("status") != status)
        ]
        return 200, _page(path, matching, params)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeStripe

    def do_GET(self) -> None:
        fake = self.fake
        allowed = fake.arrive()
        try:
            if fake.latency[1] > 0:
                # Stripe's own time to answer: what a sequential client waits for every page.
                time.sleep(random.uniform(*fake.latency))
            if allowed:
                parts = urlsplit(self.path)
                status, body = fake.answer(
                    parts.path,
                    parse_qsl(parts.query),
                    self.headers.get("Authorization"),
                    self.headers.get("Stripe-Account"),
                )
            else:
                status, body = 429, _RATE_LIMITED
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 500:
                self.send_header("Stripe-Should-Retry", "false")
            if status == 429:
                self.send_header("Retry-After", "1")
            self.end_headers()
            self.wfile.write(data)
        finally:
            fake.leave()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(fake: FakeStripe) -> Iterator[FakeStripe]:
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
