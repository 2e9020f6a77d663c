"""The body limit is enforced while reading: the app is driven directly with an ASGI `receive`
that offers a 100 MB body in 64 KB chunks and counts how many the app took."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ingest.app import create_app
from shared.settings import Settings
from tests.conftest import SECRET
from tests.ingest.helpers import Stored
from tests.support import sign

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024
HUNDRED_MB_IN_CHUNKS = 1600


async def drive(settings: Settings, headers: list[tuple[bytes, bytes]]) -> tuple[list[Any], int]:
    """POST a 100 MB body to the app; (messages it sent, chunks it received)."""
    app = create_app(settings)
    taken = 0

    async def receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        return {
            "type": "http.request",
            "body": b"x" * CHUNK,
            "more_body": taken < HUNDRED_MB_IN_CHUNKS,
        }

    sent: list[Any] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhooks/stripe",
        "raw_path": b"/webhooks/stripe",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"stripe-signature", sign(b"{}", SECRET).encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return sent, taken


async def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(
    settings: Settings, stored: Stored
) -> None:
    sent, taken = await drive(settings, [(b"transfer-encoding", b"chunked")])

    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert orjson.loads(sent[1]["body"]) == {"error": "payload_too_large"}
    # 1 MiB is 16 chunks: the 17th passes the limit and nothing more is read.
    assert settings.max_body_bytes == 16 * CHUNK
    assert taken == 17
    assert stored.rows() == {}


async def test_an_announced_length_over_the_limit_is_refused_without_reading(
    settings: Settings, stored: Stored
) -> None:
    sent, taken = await drive(settings, [(b"content-length", str(100 * 1024 * 1024).encode())])

    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"]) == {"error": "payload_too_large"}
    assert taken == 0
    assert stored.rows() == {}
