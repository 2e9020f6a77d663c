"""A subclass of uvicorn's internals: its httptools protocol, with the web process's limits
and a response's head and body sent in one write.

Written against uvicorn 0.54 (pinned below 0.55 in pyproject.toml): it overrides methods of
`HttpToolsProtocol` (from `uvicorn.protocols.http.httptools_impl`, not a public API) and relies
on the protocol writing a response's head and its body as separate writes.
tests/ingest/test_uvicorn_protocol.py and tests/ingest/test_limits.py guard it against the real
uvicorn: the methods are still there, the bytes on the wire are uvicorn's own, a head whose body
is late is not held back, and the limits hold.

Limits (CONTRACT.md), which uvicorn's httptools protocol lacks:
- a request head (request line and headers) over MAX_HEAD_BYTES is answered 431 and the
  connection closed, whether it is complete or still arriving (httptools would buffer it all);
- a head that is not complete `read_timeout_s` after its first byte (or a new connection that
  sends nothing for that long) is answered 408, or closed, and the body's own deadline is kept
  by the endpoint (ingest.body);
- over `max_concurrency` connections or running requests, a request is answered 503
  `{"error": "unavailable"}` and its connection closed;
- idle keep-alive connections are closed by uvicorn after `timeout_keep_alive`.

Joined writes: uvicorn writes the status line and headers when the app sends
`http.response.start`, and the body on `http.response.body`: two `send()` calls and two packets
per response, a fifth of the receiver's CPU under load. Here the head is held until the body
follows (in the same task, a few microseconds later) and both go out as one write; a head with
nothing after it is written at the end of the loop iteration.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest.body import MAX_HEAD_BYTES


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing, uvicorn calls send_400_response."""


def _answer(status: str, code: str) -> bytes:
    body = orjson.dumps({"error": code})
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


HEAD_TOO_LARGE = _answer("431 Request Header Fields Too Large", "headers_too_large")
HEAD_TIMEOUT = _answer("408 Request Timeout", "request_timeout")
BAD_REQUEST = _answer("400 Bad Request", "bad_request")
UNAVAILABLE_BODY = orjson.dumps({"error": "unavailable"})


async def _unavailable(_scope: Scope, _receive: Receive, send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(UNAVAILABLE_BODY)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})


class _JoinedWrites:
    """A transport whose first write waits for the next one (or the loop's next turn)."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    read_timeout_s: float = 30.0
    max_concurrency: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_size = 0  # request line and headers parsed so far
        self._head_received = 0  # bytes received while a head stayed incomplete
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_JoinedWrites(transport, self.loop))  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head = self._in_head
        super().data_received(data)
        # A chunk in which a head began is not counted (part of it may be the previous
        # request's): a head is refused at most one read past the limit.
        if in_head and self._in_head and not self._refused:
            self._head_received += len(data)
            if self._head_received > MAX_HEAD_BYTES:
                self._refuse(HEAD_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = self._head_received = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        if self._head_size > MAX_HEAD_BYTES:
            self._refused = True
            raise _HeadTooLarge
        limit = self.max_concurrency
        if limit is not None and (len(self.connections) > limit or len(self.tasks) >= limit):
            app, self.app = self.app, _unavailable
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        # The parser stopped: on _HeadTooLarge, or on what is not HTTP (uvicorn's answer would
        # be plain text; every refusal here is JSON).
        self._refuse(HEAD_TOO_LARGE if self._refused else BAD_REQUEST)

    def _refuse(self, answer: bytes) -> None:
        self._refused = True
        self._disarm_head_timer()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.read_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.flow is not None and self.flow.read_paused:
            self._arm_head_timer()  # we stopped reading (pipelining), not the client
        elif self._in_head:
            self._refuse(HEAD_TIMEOUT)
        elif self.cycle is None and not self.transport.is_closing():
            self._refused = True
            self.transport.close()  # a connection that never sent a byte


def protocol(read_timeout_s: float, max_concurrency: int | None) -> type[JoinedWritesProtocol]:
    """The protocol class for uvicorn's `http=`, with these limits."""
    return type(
        "WebhookProtocol",
        (JoinedWritesProtocol,),
        {"read_timeout_s": read_timeout_s, "max_concurrency": max_concurrency},
    )
