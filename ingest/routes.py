"""The endpoints: `POST /webhooks/stripe` (and `/webhooks/stripe/<name>`), `/healthz`,
`/readyz`, `/metrics`.

The webhook endpoint is a plain ASGI callable: it reads the body itself (the limit is enforced
while streaming) and writes its JSON answer without building Request/Response objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.body import (
    BodyTimeout,
    BodyTooLarge,
    ClientDisconnected,
    announced_length,
    read_body,
)
from ingest.event import EventRow, MalformedEvent, parse_event
from ingest.metrics import CONTENT_TYPE, IntakeMetrics
from ingest.probes import Probe
from ingest.signature import INVALID, MISSING, SignatureRejected, signing_keys, verify
from ingest.storage import EventRejected
from shared.db import DatabaseUnavailable
from shared.settings import Settings

log = structlog.get_logger("ingest.webhook")

_JSON = (b"content-type", b"application/json")


def _error(code: str) -> bytes:
    return orjson.dumps({"error": code})


ERRORS = {
    code: _error(code)
    for code in (
        MISSING,
        INVALID,
        "malformed_event",
        "livemode_mismatch",
        "payload_too_large",
        "request_timeout",
        "unavailable",
        "unknown_endpoint",
    )
}


class WebhookEndpoint:
    """One endpoint: `/webhooks/stripe` (`name` None) or `/webhooks/stripe/<name>`, verified
    with its own secrets only."""

    def __init__(
        self,
        settings: Settings,
        store: Callable[[EventRow], Awaitable[bool]],
        metrics: IntakeMetrics,
        name: str | None = None,
    ) -> None:
        secrets = settings.webhook_secrets if name is None else settings.endpoint_secrets[name]
        self._keys = signing_keys(secrets)
        self.name = name
        self._tolerance = settings.webhook_tolerance
        self._livemode = settings.expected_livemode
        self._limit = settings.max_body_bytes
        self._read_timeout = settings.webhook_read_timeout_seconds
        self._store = store
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        # Bound per request (set once the event is parsed), reset at the end: every log line
        # of this request names its event.
        tokens = structlog.contextvars.bind_contextvars(event_id=None)
        row: EventRow | None = None
        try:
            status, outcome, body, row = await self._handle(scope, receive)
        except ClientDisconnected:
            status, outcome, body = 0, "disconnected", b""
        except Exception:
            # No 5xx but 503: Stripe retries it, and nothing was answered 200.
            log.exception("webhook.error")
            status, outcome, body = 503, "unavailable", ERRORS["unavailable"]
        try:
            if status:
                headers = [_JSON, (b"content-length", str(len(body)).encode())]
                if status in (408, 413):
                    # The client may still be sending: do not read the rest, close the connection.
                    headers.append((b"connection", b"close"))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            elapsed = perf_counter() - started
            self._metrics.observe(outcome, elapsed)
            # A stored event is on record (its row, and the batch's `webhook.stored` line): its
            # own line is debug. Every other outcome (duplicate, refused, 503) logs at info.
            emit = log.debug if outcome == "stored" else log.info
            emit(
                "webhook.received",
                endpoint=self.name,
                event_type=row.type if row is not None else None,
                outcome=outcome,
                status=status,
                ms=round(elapsed * 1000, 2),
            )
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, str, bytes, EventRow | None]:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        length = announced_length(headers)
        if length is not None and length > self._limit:
            return 413, "payload_too_large", ERRORS["payload_too_large"], None
        signature: bytes | None = None
        for name, value in headers:
            if name == b"stripe-signature":
                signature = value
                break
        if signature is None:
            return 400, MISSING, ERRORS[MISSING], None
        try:
            raw = await read_body(receive, self._limit, self._read_timeout)
        except BodyTooLarge:
            return 413, "payload_too_large", ERRORS["payload_too_large"], None
        except BodyTimeout:
            return 408, "request_timeout", ERRORS["request_timeout"], None
        try:
            # Stripe signs the UTF-8 text; a body that is not UTF-8 cannot carry its signature.
            payload = raw.decode("utf-8")
            verify(raw, signature, self._keys, self._tolerance)
        except (UnicodeDecodeError, SignatureRejected):
            return 400, INVALID, ERRORS[INVALID], None
        try:
            row = parse_event(payload, self.name)
        except MalformedEvent:
            return 400, "malformed_event", ERRORS["malformed_event"], None
        structlog.contextvars.bind_contextvars(event_id=row.id)
        if self._livemode is not None and row.livemode is not self._livemode:
            return 400, "livemode_mismatch", ERRORS["livemode_mismatch"], row
        try:
            new = await self._store(row)
        except EventRejected:
            return 400, "malformed_event", ERRORS["malformed_event"], row
        except DatabaseUnavailable:
            return 503, "unavailable", ERRORS["unavailable"], row
        answer = orjson.dumps({"received": True, "duplicate": not new, "id": row.id})
        return 200, "stored" if new else "duplicate", answer, row


def unknown_endpoint(metrics: IntakeMetrics) -> ASGIApp:
    """`POST /webhooks/stripe/<name>` for a name no STRIPE_WEBHOOK_SECRET_<NAME> gives: 404."""
    body = ERRORS["unknown_endpoint"]
    headers = [_JSON, (b"content-length", str(len(body)).encode()), (b"connection", b"close")]

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        metrics.observe("unknown_endpoint", perf_counter() - started)
        name = scope["path"].removeprefix("/webhooks/stripe/")[:64]  # which name was asked for
        log.info("webhook.received", endpoint=name, outcome="unknown_endpoint", status=404)

    return endpoint


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readyz(probes: list[Probe]) -> Callable[[Request], Awaitable[Response]]:
    """200 when every probe answers, else 503 naming what is down."""

    async def endpoint(_request: Request) -> Response:
        results = await asyncio.gather(*(probe.check() for probe in probes))
        down = [probe.name for probe, ok in zip(probes, results, strict=True) if not ok]
        if down:
            return JSONResponse({"status": "unavailable", "down": down}, status_code=503)
        return JSONResponse({"status": "ready", "down": []})

    return endpoint


def metrics(registry: IntakeMetrics) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_request: Request) -> Response:
        return Response(registry.render(), media_type=CONTENT_TYPE)

    return endpoint
