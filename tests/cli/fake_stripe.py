"""A local stand-in for Stripe's `GET /v1/events`: a real HTTP server with Stripe's paging rules
(newest first, `limit`, `starting_after`, `created[gte]`, `types[]`, `delivery_success`), which
records every query it answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class FakeStripe:
    events: list[dict[str, Any]]  # any order; served newest first
    undelivered: set[str] = field(default_factory=set)
    api_key: str = "sk_test_fake"
    queries: list[list[tuple[str, str]]] = field(default_factory=list)
    fail_on_request: int | None = None  # 1-based request number answered with a 500
    url: str = ""

    def answer(self, path: str, query: list[tuple[str, str]], auth: str | None) -> tuple[int, Any]:
        self.queries.append(query)
        if auth != f"Bearer {self.api_key}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
        if path != "/v1/events":
            return 404, {"error": {"type": "invalid_request_error", "message": "no such path"}}
        if self.fail_on_request == len(self.queries):
            return 500, {"error": {"type": "api_error", "message": "injected outage"}}
        params = dict(query)
        types = [v for k, v in query if k == "types[]" or k.startswith("types[")]
        gte = int(params.get("created[gte]", "0"))
        matching = sorted(
            (
                e
                for e in self.events
                if e["created"] >= gte
                and (not types or e["type"] in types)
                and (params.get("delivery_success") != "false" or e["id"] in self.undelivered)
            ),
            key=lambda e: (e["created"], e["id"]),
            reverse=True,
        )
        start = 0
        after = params.get("starting_after")
        if after:
            start = next(i for i, e in enumerate(matching) if e["id"] == after) + 1
        limit = min(int(params.get("limit", "10")), 100)
        page = matching[start : start + limit]
        return 200, {
            "object": "list",
            "url": "/v1/events",
            "has_more": start + limit < len(matching),
            "data": page,
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeStripe

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        status, body = self.fake.answer(
            parts.path, parse_qsl(parts.query), self.headers.get("Authorization")
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
