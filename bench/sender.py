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

import uvloop  # comes with uvicorn[standard]


@dataclass
class Sent:
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_s) or [float("nan")]
        return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))] * 1000


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status and whether the server closes; the body is read and dropped."""
    lines = (await reader.readuntil(b"\r\n\r\n")).lower().split(b"\r\n")
    headers = {name: value.strip() for name, _, value in (x.partition(b":") for x in lines[1:])}
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(lines[0].split()[1]), headers.get(b"connection") == b"close"


async def _send_all(
    port: int, requests: Sequence[tuple[bytes, str]], connections: int, rate: float | None
) -> Sent:
    head = "POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "Content-Type: application/json; charset=utf-8"
    payloads = [
        f"{head}\r\nStripe-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        for body, sig in requests
    ]
    todo, result, start = iter(range(len(payloads))), Sent(), time.perf_counter()

    async def connection() -> None:
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for index in todo:
            intended = start + index / rate if rate else time.perf_counter()
            if (delay := intended - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            stream = stream or await asyncio.open_connection("127.0.0.1", port)
            try:
                stream[1].write(payloads[index])
                status, close = await asyncio.wait_for(_response(stream[0]), 30.0)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                result.errors, close = result.errors + 1, True
            else:
                result.latencies_s.append(time.perf_counter() - intended)
                result.statuses[status] = result.statuses.get(status, 0) + 1
            if close:
                stream[1].close()
                stream = None
        if stream is not None:
            stream[1].close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.elapsed_s = time.perf_counter() - start
    return result


def send(
    port: int, requests: Sequence[tuple[bytes, str]], *, connections: int, rate: float | None = None
) -> Sent:
    """POST every (body, signature) to our URL on `port` once; at most `rate` per second."""
    return uvloop.run(_send_all(port, requests, connections, rate))
