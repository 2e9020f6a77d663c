"""The web process's limits, against `python -m ingest` with raw sockets: heads over 64 KB, heads
and bodies that stall, idle keep-alive connections, and too many connections at once."""

from __future__ import annotations

import socket
import time

import httpx
import orjson

from tests.conftest import SECRET
from tests.ingest.helpers import Stored
from tests.ingest.test_process import web_process
from tests.support import sign, unique_event

EVENT = "stripe-ruby-mock__invoice.paid__1"


def connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def until_closed(sock: socket.socket, within: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection; fails after `within` s."""
    deadline = time.monotonic() + within
    received = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"connection still open after {within} s: {received!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            continue
        if not chunk:
            return received
        received += chunk


def signed_request(event_id: str, extra_headers: str = "") -> bytes:
    event = unique_event(EVENT, "x")
    event["id"] = event_id
    body = orjson.dumps(event)
    return (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: test\r\nStripe-Signature: {sign(body, SECRET)}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{extra_headers}\r\n"
    ).encode() + body


def post(base_url: str, event_id: str) -> httpx.Response:
    event = unique_event(EVENT, "x")
    event["id"] = event_id
    body = orjson.dumps(event)
    return httpx.post(
        f"{base_url}/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": sign(body, SECRET)},
        timeout=10,
    )


def test_a_body_that_stalls_is_cut_off_while_others_are_served(
    env: dict[str, str], stored: Stored
) -> None:
    request = signed_request("evt_stalled")
    half = len(request) - 200
    with web_process({**env, "WEBHOOK_READ_TIMEOUT_SECONDS": "1"}) as (base_url, _web):
        stalled = connect(base_url)
        stalled.sendall(request[:half])
        served = post(base_url, "evt_served")
        started = time.monotonic()
        answer = until_closed(stalled)
        waited = time.monotonic() - started
        stalled.close()

    assert served.status_code == 200
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b'{"error":"request_timeout"}')
    assert waited < 10
    assert set(stored.rows()) == {"evt_served"}


def test_a_head_that_stalls_and_a_silent_connection_are_cut_off(
    env: dict[str, str], stored: Stored
) -> None:
    with web_process({**env, "WEBHOOK_READ_TIMEOUT_SECONDS": "1"}) as (base_url, _web):
        partial, silent = connect(base_url), connect(base_url)
        partial.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: test\r\nStripe-Sig")
        served = post(base_url, "evt_served")
        partial_answer = until_closed(partial)
        silent_answer = until_closed(silent)
        partial.close()
        silent.close()

    assert served.status_code == 200
    assert partial_answer.startswith(b"HTTP/1.1 408 ")
    assert silent_answer == b""
    assert set(stored.rows()) == {"evt_served"}


def test_a_head_over_64_kb_is_refused_with_431(env: dict[str, str], stored: Stored) -> None:
    padding = "x" * (70 * 1024)
    with web_process(env) as (base_url, _web):
        sock = connect(base_url)
        sock.sendall(signed_request("evt_big_head", f"X-Padding: {padding}\r\n"))
        answer = until_closed(sock)
        sock.close()
        under = connect(base_url)
        under.sendall(
            signed_request("evt_under", f"X-Padding: {'x' * (60 * 1024)}\r\nConnection: close\r\n")
        )
        under_answer = until_closed(under)
        under.close()

    assert answer.startswith(b"HTTP/1.1 431 ")
    assert answer.endswith(b'{"error":"headers_too_large"}')
    assert under_answer.startswith(b"HTTP/1.1 200 ")
    assert set(stored.rows()) == {"evt_under"}


def test_a_head_that_never_ends_is_not_read_past_the_limit(
    env: dict[str, str], stored: Stored
) -> None:
    """The issue's 64 MB header: the server stops reading, answers 431 (or closes)."""
    chunk = b"x" * 65536
    with web_process(env) as (base_url, _web):
        sock = connect(base_url)
        sock.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        sent = 0
        sock.settimeout(2)
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # reset, broken pipe, or the server no longer reads (timeout)
            pass
        answer = until_closed(sock)
        sock.close()
        after = post(base_url, "evt_after")

    assert sent < 16 * 1024 * 1024, sent  # socket buffers hold a few MB at most
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert after.status_code == 200
    assert set(stored.rows()) == {"evt_after"}


def test_an_idle_keep_alive_connection_is_closed(env: dict[str, str], stored: Stored) -> None:
    with web_process({**env, "WEB_KEEP_ALIVE_SECONDS": "1"}) as (base_url, _web):
        sock = connect(base_url)
        sock.sendall(signed_request("evt_kept"))
        answer = until_closed(sock, within=3.5)  # uvicorn's default would be 5 s
        sock.close()

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"id":"evt_kept"' in answer
    assert set(stored.rows()) == {"evt_kept"}


def test_over_the_concurrency_limit_a_request_gets_503_unavailable(
    env: dict[str, str], stored: Stored
) -> None:
    limited = {**env, "WEB_MAX_CONCURRENCY": "2", "WEB_KEEP_ALIVE_SECONDS": "60"}
    with web_process(limited) as (base_url, _web):
        # /healthz polling is done; two connections stay open, idle.
        held = [connect(base_url), connect(base_url)]
        for i, sock in enumerate(held):
            sock.sendall(signed_request(f"evt_held_{i}"))
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        refused = post(base_url, "evt_refused")
        held[0].close()
        deadline = time.monotonic() + 10
        while (accepted := post(base_url, "evt_accepted")).status_code != 200:
            assert time.monotonic() < deadline, accepted.text  # the server sees the close
        held[1].close()

    assert refused.status_code == 503
    assert refused.json() == {"error": "unavailable"}
    assert set(stored.rows()) == {"evt_held_0", "evt_held_1", "evt_accepted"}


def test_what_is_not_http_gets_400_bad_request_in_json(env: dict[str, str], stored: Stored) -> None:
    with web_process(env) as (base_url, _web):
        sock = connect(base_url)
        sock.sendall(signed_request("evt_control", "X-Junk: a\x01b\r\n"))
        answer = until_closed(sock)
        sock.close()

    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b'{"error":"bad_request"}')
    assert stored.rows() == {}
