"""Read a request body from ASGI `receive`, refusing it as soon as it passes the limit or its
deadline.

Nothing beyond `limit` bytes is ever kept: a 100 MB body costs at most one chunk past it. The
whole body must arrive within `timeout_s` of the endpoint starting to read it, so a client that
stalls (or drips) holds its connection for that long at most.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive

# The largest request head (request line and headers) the web process reads (CONTRACT.md).
MAX_HEAD_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """The body (announced or received so far) is larger than the limit."""


class BodyTimeout(Exception):
    """The body did not arrive within the read timeout."""


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


def announced_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole body; `BodyTooLarge` as soon as the running total passes `limit`, `BodyTimeout`
    when it is not all there within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(receive, limit)
    except TimeoutError:
        raise BodyTimeout from None


async def _read(receive: Receive, limit: int) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    first: bytes = message.get("body", b"")
    if len(first) > limit:
        raise BodyTooLarge
    if not message.get("more_body", False):
        return first  # the usual case: one chunk, no copy
    chunks = [first]
    total = len(first)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
