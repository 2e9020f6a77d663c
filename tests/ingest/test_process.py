"""`python -m ingest` as the Procfile runs it: a real uvicorn process on a free port."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import SECRET
from tests.ingest.helpers import Stored
from tests.procs import Running, child_env, free_port, run_process, run_web, wait_until
from tests.support import sign, unique_event

HUNDRED_MB = 100 * 1024 * 1024


@contextlib.contextmanager
def web_process(env: dict[str, str]) -> Iterator[tuple[str, Running]]:
    """Like tests.procs.run_web, keeping hold of the process to read its log."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with run_process("web", [sys.executable, "-m", "ingest"], {**env, "PORT": str(port)}) as web:

        def healthy() -> bool:
            assert web.alive(), web.logs()
            try:
                return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, interval=0.1)
        yield base_url, web


def run_module(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as workdir:  # no developer .env leaks in
        return subprocess.run(
            [sys.executable, "-m", "ingest"],
            env=child_env(env),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )


def test_web_refuses_to_start_without_a_secret_with_one_clear_line(env: dict[str, str]) -> None:
    without = {k: v for k, v in env.items() if k != "STRIPE_WEBHOOK_SECRET"}
    result = run_module(without)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "STRIPE_WEBHOOK_SECRET is not set" in lines[0]
    assert "Traceback" not in result.stderr


def test_web_refuses_a_secret_that_is_not_a_signing_secret(env: dict[str, str]) -> None:
    result = run_module({**env, "STRIPE_WEBHOOK_SECRET": "sk_test_oops"})

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "must start with whsec_" in result.stderr
    assert "sk_test_oops" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRIPE_WEBHOOK_SECRET", "whsec_"),
        ("STRIPE_WEBHOOK_SECRET", f"whsec_,{SECRET}"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_short"),
        ("STRIPE_WEBHOOK_TOLERANCE", "0"),
        ("STRIPE_WEBHOOK_TOLERANCE", "3601"),
        ("STRIPE_WEBHOOK_TOLERANCE", "99999999999"),
        ("STRIPE_WEBHOOK_TOLERANCE", "9" * 400),
    ],
)
def test_web_refuses_settings_that_weaken_verification(
    env: dict[str, str], name: str, value: str
) -> None:
    result = run_module({**env, name: value})

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert len(lines[0]) < 200
    assert SECRET not in result.stderr


def test_the_web_process_stores_and_enqueues_a_signed_event_and_logs_it(
    env: dict[str, str], stored: Stored
) -> None:
    event = unique_event("stripe-sync-engine__customer_updated__1", "process")
    body = orjson.dumps(event)
    headers = {"Stripe-Signature": sign(body, SECRET), "Content-Type": "application/json"}
    with web_process({**env, "LOG_LEVEL": "info"}) as (base_url, web):
        response = httpx.post(f"{base_url}/webhooks/stripe", content=body, headers=headers)
        queued = stored.wait_queued_sync(1)
        again = httpx.post(f"{base_url}/webhooks/stripe", content=body, headers=headers)
        metrics = httpx.get(f"{base_url}/metrics").text
    logs = web.logs()

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False, "id": event["id"]}
    assert again.json() == {"received": True, "duplicate": True, "id": event["id"]}
    assert stored.rows()[event["id"]]["payload"] == event
    assert queued == [event["id"]]
    assert 'stripe_webhook_requests_total{outcome="stored"} 1.0' in metrics

    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    # At info, a stored event is named by its batch's line; other outcomes by their own line.
    batches = [line for line in lines if line["event"] == "webhook.stored"]
    assert [(b["count"], b["event_ids"]) for b in batches] == [(1, [event["id"]])]
    received = [line for line in lines if line["event"] == "webhook.received"]
    assert len(received) == 1
    assert received[0]["event_id"] == event["id"]
    assert received[0]["event_type"] == "customer.updated"
    assert (received[0]["outcome"], received[0]["status"]) == ("duplicate", 200)
    assert isinstance(received[0]["ms"], float)
    # Never the payload, secrets or e-mail addresses.
    assert "supabase.io" not in logs
    assert SECRET not in logs
    assert "billing" not in logs


class RawClient:
    """A raw HTTP/1.1 client that sends a body while a thread reads the answer, so an early
    response is seen even when the server closes the connection on the rest of the body."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.answer = b""
        self.done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.answer += chunk
                if b"\r\n\r\n" in self.answer and self.answer.endswith(b"}"):
                    break
        except OSError:
            pass
        finally:
            self.done.set()

    def send(self, data: bytes) -> bool:
        """False once the server no longer takes data (it answered or closed)."""
        if self.done.is_set() or self.answer:
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()
        self.reader.join(timeout=5)


def _head(content_header: str) -> bytes:
    signature = sign(b"{}", SECRET)
    return (
        f"POST /webhooks/stripe HTTP/1.1\r\nHost: test\r\nStripe-Signature: {signature}\r\n"
        f"Content-Type: application/json\r\n{content_header}\r\n\r\n"
    ).encode()


def test_an_announced_100_mb_body_is_refused_before_it_is_sent(
    env: dict[str, str], stored: Stored
) -> None:
    with run_web(env) as base_url:
        client = RawClient(base_url)
        try:
            client.send(_head(f"Content-Length: {HUNDRED_MB}"))
            sent = 0
            started = time.monotonic()
            while sent < HUNDRED_MB and time.monotonic() - started < 20:
                if not client.send(b"x" * 65536):
                    break
                sent += 65536
            client.done.wait(10)
        finally:
            client.close()

    assert client.answer.startswith(b"HTTP/1.1 413 ")
    assert client.answer.endswith(b'{"error":"payload_too_large"}')
    assert b"connection: close" in client.answer.lower()
    # Socket buffers take a few MB at most; the other ~90 MB were never sent.
    assert sent < 16 * 1024 * 1024, sent
    assert stored.rows() == {}


def test_a_streamed_100_mb_body_is_refused_once_it_passes_the_limit(
    env: dict[str, str], stored: Stored
) -> None:
    chunk = b"x" * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with run_web(env) as base_url:
        client = RawClient(base_url)
        try:
            client.send(_head("Transfer-Encoding: chunked"))
            sent = 0
            started = time.monotonic()
            while sent < HUNDRED_MB and time.monotonic() - started < 20:
                if not client.send(framed):
                    break
                sent += len(chunk)
            client.done.wait(10)
        finally:
            client.close()

    assert client.answer.startswith(b"HTTP/1.1 413 ")
    assert client.answer.endswith(b'{"error":"payload_too_large"}')
    assert sent < 16 * 1024 * 1024, sent
    assert stored.rows() == {}


def test_one_keep_alive_connection_gets_every_answer_whole_and_in_order(
    env: dict[str, str], stored: Stored
) -> None:
    """The web process writes a response's head and body together: on a reused connection each
    answer (webhook, probes, metrics; 200, 400) still arrives complete, one after the other."""
    events = [unique_event("stripe-sync-engine__customer_updated__1", f"ka{i}") for i in range(3)]
    with web_process(env) as (base_url, _web), httpx.Client(base_url=base_url) as client:
        answers = []
        responses = []
        for event in events:
            body = orjson.dumps(event)
            signed = client.post(
                "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, SECRET)}
            )
            unsigned = client.post("/webhooks/stripe", content=body)
            health = client.get("/healthz")
            responses += [signed, unsigned, health]
            answers.append((signed.json(), unsigned.status_code, unsigned.json(), health.json()))
        metrics = client.get("/metrics")
        responses.append(metrics)
        local_ends = {
            r.extensions["network_stream"].get_extra_info("socket").getsockname() for r in responses
        }

    assert len(local_ends) == 1  # one connection carried all ten
    assert answers == [
        (
            {"received": True, "duplicate": False, "id": event["id"]},
            400,
            {"error": "missing_signature"},
            {"status": "ok"},
        )
        for event in events
    ]
    assert 'stripe_webhook_requests_total{outcome="stored"} 3.0' in metrics.text
    assert set(stored.rows()) == {event["id"] for event in events}
