"""A local stand-in for Stripe's API: a real HTTP server with Stripe's paging rules (newest first,
`limit` up to 100, `starting_after`, `created[gte]`), which records every query it answers.

- `GET /v1/events`: also `types[]` and `delivery_success`; with a `Stripe-Account` header, the
  events of that connected account (`connected`), none of the platform's.
- `GET /v1/customers`, `/v1/subscriptions`, `/v1/invoices`: the objects in `objects`; deleted
  customers are not listed, and subscriptions only with `status=all` include canceled ones (as at
  Stripe). `GET /v1/<those>/<id>`: one object, `{"id", "object", "deleted": true}` for a deleted
  customer, 404 for an unknown id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
    url: str = ""

    def answer(
        self,
        path: str,
        query: list[tuple[str, str]],
        auth: str | None,
        account: str | None = None,
    ) -> tuple[int, Any]:
        self.queries.append(query)
        self.paths.append(path)
        self.accounts.append(account)
        if auth != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
        if self.fail_on_request == len(self.queries):
            return 500, {"error": {"type": "api_error", "message": "injected outage"}}
        parts = path.strip("/").split("/")
        if len(parts) in (2, 3) and parts[0] == "v1" and parts[1] in _LISTED:
            return self._objects(path, parts[1], parts[2] if len(parts) == 3 else None, query)
        if path != "/v1/events":
            return _missing("path")
        params = dict(query)
        types = [v for k, v in query if k == "types[]" or k.startswith("types[")]
        gte = int(params.get("created[gte]", "0"))
        listed = self.connected.get(account, []) if account else self.events
        matching = sorted(
            (
                e
                for e in listed
                if e["created"] >= gte
                and (not types or e["type"] in types)
                and (params.get("delivery_success") != "false" or e["id"] in self.undelivered)
            ),
            key=lambda e: (e["created"], e["id"]),
            reverse=True,
        )
        return 200, _page(path, matching, params)

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
        parts = urlsplit(self.path)
        status, body = self.fake.answer(
            parts.path,
            parse_qsl(parts.query),
            self.headers.get("Authorization"),
            self.headers.get("Stripe-Account"),
        )
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 500:
            self.send_header("Stripe-Should-Retry", "false")
        self.end_headers()
        self.wfile.write(data)

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
