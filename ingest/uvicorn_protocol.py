"""A subclass of uvicorn's internals: its httptools protocol, with a response's head and body
sent in one write.

Written against uvicorn 0.54 (pinned below 0.55 in pyproject.toml): it overrides
`HttpToolsProtocol.connection_made` (from `uvicorn.protocols.http.httptools_impl`, not a public
API) and relies on the protocol writing a response's head and its body as separate writes.
tests/ingest/test_uvicorn_protocol.py guards it against the real uvicorn: the method is still
there, the bytes on the wire are uvicorn's own, and a head whose body is late is not held back.

uvicorn writes the status line and headers when the app sends `http.response.start`, and the
body on `http.response.body`: two `send()` calls and two packets per response, a fifth of the
receiver's CPU under load. Here the head is held until the body follows (in the same task, a
few microseconds later) and both go out as one write; a head with nothing after it is written
at the end of the loop iteration.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_JoinedWrites(transport, self.loop))  # type: ignore[arg-type]
