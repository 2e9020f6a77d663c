"""A fake Stripe API for tests: a real HTTP server on 127.0.0.1 serving objects by path."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeStripe:
    base_url: str = ""
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Status codes to answer before serving normally, consumed one per request.
    failures: list[int] = field(default_factory=list)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    # Each request's headers, names lowercased, in the order of `requests`.
    headers: list[dict[str, str]] = field(default_factory=list)

    def put(self, path: str, obj: dict[str, Any]) -> None:
        self.objects[path] = obj


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    state = FakeStripe()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                state.requests.append((self.path, self.headers.get("Authorization")))
                state.headers.append({k.lower(): v for k, v in self.headers.items()})
                failure = state.failures.pop(0) if state.failures else None
                obj = state.objects.get(self.path.split("?")[0])
            if failure is not None:
                self._reply(failure, {"error": {"type": "api_error", "message": "injected"}})
            elif obj is None:
                self._reply(
                    404,
                    {"error": {"type": "invalid_request_error", "code": "resource_missing"}},
                )
            else:
                self._reply(200, obj)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_fake")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
