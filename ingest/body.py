"""Read a request body from ASGI `receive`, refusing it as soon as it passes the limit.

Nothing beyond `limit` bytes is ever kept: a 100 MB body costs at most one chunk past it.
"""

from __future__ import annotations

from starlette.types import Receive


class BodyTooLarge(Exception):
    """The body (announced or received so far) is larger than the limit."""


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


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, or `BodyTooLarge` as soon as the running total passes `limit`."""
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
