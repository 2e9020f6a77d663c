"""A small async webhook sender: keep-alive HTTP/1.1 over asyncio streams, optionally paced.

Cheaper than an HTTP client library, so the sender takes as little of the 2 cores as possible.
Paced mode sends request k at start + k/rate (open loop); latency counts from that intended
time, so a stalled server is not hidden (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class SendResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, p: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000


def _request(host: str, port: int, path: str, body: bytes, signature: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Stripe-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def send_all(
    host: str,
    port: int,
    requests: Sequence[tuple[bytes, str]],
    *,
    connections: int = 32,
    rate: float | None = None,
    path: str = "/webhooks/stripe",
    timeout: float = 30.0,
) -> SendResult:
    """POST every (body, signature) once; at most `rate` requests/s when given."""
    result = SendResult()
    payloads = [_request(host, port, path, body, sig) for body, sig in requests]
    next_index = 0
    start = time.perf_counter()

    async def one_connection() -> None:
        nonlocal next_index
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while next_index < len(payloads):
                index = next_index
                next_index += 1
                intended = start + index / rate if rate else time.perf_counter()
                delay = intended - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(payloads[index])
                    status, close = await asyncio.wait_for(_read_response(reader), timeout)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    result.errors += 1
                    writer.close()
                    reader = writer = None
                    continue
                result.latencies_s.append(time.perf_counter() - intended)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.sent += 1
                if close:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    result.elapsed_s = time.perf_counter() - start
    return result


def send(
    host: str,
    port: int,
    requests: Sequence[tuple[bytes, str]],
    *,
    connections: int = 32,
    rate: float | None = None,
) -> SendResult:
    import uvloop  # comes with uvicorn[standard]

    return uvloop.run(send_all(host, port, requests, connections=connections, rate=rate))
