"""ingest/uvicorn_protocol.py subclasses uvicorn's internals: guard it against the real uvicorn.

The method it overrides is still uvicorn's; served by a real `uvicorn.Server`, its bytes on the
wire are those of uvicorn's own protocol, in one write per response where uvicorn makes two;
a head whose body is late still goes out; and the web process serves through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ingest.__main__ import _http_protocol
from ingest.uvicorn_protocol import JoinedWritesProtocol
from shared.settings import Settings
from tests.procs import free_port, run_web, wait_until

Scope = dict[str, Any]
_released = threading.Event()


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """A bare ASGI app: a sized answer, a streamed one, an empty one, and a late body."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/late":
        sized = [(b"content-type", b"text/plain"), (b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": sized})
        await asyncio.to_thread(_released.wait, 30)
        await send({"type": "http.response.body", "body": b"late"})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"one", b"two"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    else:
        answer = b'{"path":"%s","got":%d}' % (path.encode(), len(body))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer)).encode()),
        ]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


class _CountedWrites:
    """The server's real transport, keeping what each `write` was given."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def counted(base: type[HttpToolsProtocol], writes: list[list[bytes]]) -> type[HttpToolsProtocol]:
    class Counted(base):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            writes.append([])
            super().connection_made(_CountedWrites(transport, writes[-1]))

    return Counted


@contextlib.contextmanager
def serving(protocol: type[asyncio.Protocol]) -> Iterator[int]:
    """A real uvicorn server on a free port, in a thread, with `protocol` for HTTP."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol,
        loop="asyncio",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        date_header=False,  # so that two servers' answers can be compared byte for byte
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 15)
        yield port
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()


def exchange(port: int, requests: bytes) -> bytes:
    """Send `requests` at once on one connection; everything the server wrote until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(requests)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def request(path: str, *, body: bytes = b"", last: bool = False) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if last else "") + "\r\n").encode() + body


PIPELINE = b"".join(
    [
        request("/first", body=b'{"a":1}'),
        request("/stream"),
        request("/empty"),
        request("/second", body=b"x" * 5000),
        request("/third", last=True),
    ]
)


def test_the_method_it_overrides_is_still_uvicorns() -> None:
    assert JoinedWritesProtocol.__mro__[1] is HttpToolsProtocol
    assert "connection_made" in vars(HttpToolsProtocol)
    assert list(inspect.signature(HttpToolsProtocol.connection_made).parameters) == [
        "self",
        "transport",
    ]


def test_its_answers_are_uvicorns_bytes_in_one_write_where_uvicorn_makes_two() -> None:
    ours: list[list[bytes]] = []
    theirs: list[list[bytes]] = []
    with serving(counted(JoinedWritesProtocol, ours)) as port:
        answer = exchange(port, PIPELINE)
        single = exchange(port, request("/alone", body=b"{}", last=True))
    with serving(counted(HttpToolsProtocol, theirs)) as port:
        reference = exchange(port, PIPELINE)
        reference_single = exchange(port, request("/alone", body=b"{}", last=True))

    assert answer == reference
    assert answer.count(b"HTTP/1.1 ") == 5
    assert answer.startswith(b"HTTP/1.1 201 Created\r\n")
    assert answer.endswith(b'{"path":"/third","got":0}')
    assert b"0\r\n\r\n" in answer  # the streamed answer's last chunk
    assert single == reference_single
    assert single.endswith(b'\r\n\r\n{"path":"/alone","got":2}')
    # uvicorn writes the head and the body apart; ours joins them.
    assert [b"".join(w) for w in theirs] == [reference, reference_single]
    assert [b"".join(w) for w in ours] == [answer, single]
    assert len(theirs[1]) == 2
    assert ours[1] == [single]


def test_a_head_whose_body_is_late_is_not_held_back() -> None:
    _released.clear()
    with (
        serving(JoinedWritesProtocol) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        sock.sendall(request("/late", last=True))
        sock.settimeout(0.1)
        received = b""

        def head_arrived() -> bool:
            nonlocal received
            with contextlib.suppress(TimeoutError):
                received += sock.recv(65536)
            return b"\r\n\r\n" in received

        try:
            wait_until(head_arrived, 10, interval=0)
        finally:
            _released.set()
        head = received
        sock.settimeout(10)
        while not received.endswith(b"late") and (chunk := sock.recv(65536)):
            received += chunk

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n\r\n")  # all of the head, none of the body, before the body
    assert received == head + b"late"


def _responses(raw: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Split HTTP/1.1 answers with a content-length each: (status line, headers, body)."""
    found = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        length = int(headers[b"content-length"])
        found.append((status, headers, raw[:length]))
        raw = raw[length:]
    return found


def test_the_web_process_serves_through_it_with_whole_answers(env: dict[str, str]) -> None:
    # httptools comes with uvicorn[standard]: the web process uses the subclass.
    chosen = _http_protocol(Settings.from_mapping(env))
    assert isinstance(chosen, type) and issubclass(chosen, JoinedWritesProtocol)
    with run_web(env) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        raw = exchange(
            port,
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}"
            b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )

    (unsigned, health) = _responses(raw)
    assert unsigned[0] == b"HTTP/1.1 400 Bad Request"
    assert unsigned[2] == b'{"error":"missing_signature"}'
    assert health[0] == b"HTTP/1.1 200 OK"
    assert health[2] == b'{"status":"ok"}'
    assert health[1][b"connection"] == b"close"
