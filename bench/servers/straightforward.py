"""What a careful team writes first: verify, one autocommit INSERT, one Dramatiq send, 200.

    uvicorn --factory bench.servers.straightforward:create_app --port 8002 --no-access-log

Reads DATABASE_URL, REDIS_URL, REDIS_NAMESPACE and STRIPE_WEBHOOK_SECRET through `Settings`.
Same table and message as ours (`stripe_events`, actor `process_event` on `stripe-events`), no
grouping, no batching: one round trip to PostgreSQL and one to Redis per new event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import dramatiq
import orjson
import psycopg
import stripe
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.broker import PROCESS_ACTOR, QUEUE_NAME, make_broker
from shared.settings import Settings

INSERT = """
INSERT INTO stripe_events (id, type, created, livemode, api_version, account, ordering_key, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


def _key(event: dict[str, Any]) -> str:
    obj = event["data"]["object"]
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if isinstance(customer, str) and customer:
        return customer
    if obj.get("object") == "customer":
        return str(obj["id"])
    if obj.get("object") in ("dispute", "refund") and isinstance(obj.get("charge"), str):
        return str(obj["charge"])
    return str(obj.get("id") or event["id"])


def create_app() -> Starlette:
    settings = Settings.from_env(env_file=None)
    secrets = settings.require_webhook_secrets()
    pool = AsyncConnectionPool(
        settings.database_url, min_size=4, max_size=10, open=False, kwargs={"autocommit": True}
    )
    broker = make_broker(settings)
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name=PROCESS_ACTOR, queue_name=QUEUE_NAME, broker=broker)
    def process_event(event_id: str) -> None:  # only sent from here; the worker runs it
        raise NotImplementedError

    async def webhook(request: Request) -> Response:
        body = await request.body()
        header = request.headers.get("stripe-signature")
        if not header:
            return JSONResponse({"error": "missing_signature"}, status_code=400)
        payload = body.decode("utf-8")
        for secret in secrets:
            try:
                stripe.WebhookSignature.verify_header(
                    payload, header, secret, settings.webhook_tolerance
                )
                break
            except stripe.SignatureVerificationError:
                continue
        else:
            return JSONResponse({"error": "invalid_signature"}, status_code=400)
        try:
            event = orjson.loads(body)
            row = (
                event["id"],
                event["type"],
                datetime.fromtimestamp(event["created"], tz=UTC),
                bool(event.get("livemode")),
                event.get("api_version"),
                event.get("account"),
                _key(event),
                payload,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return JSONResponse({"error": "malformed_event"}, status_code=400)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(INSERT, row)
                new = await cur.fetchone() is not None
        except psycopg.Error:
            return JSONResponse({"error": "unavailable"}, status_code=503)
        if new:
            with contextlib.suppress(Exception):  # stored: a sweeper would enqueue it later
                process_event.send(row[0])
        return JSONResponse({"received": True, "duplicate": not new, "id": row[0]})

    async def healthz(request: Request) -> Response:
        return Response(b"ok")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    return Starlette(
        routes=[
            Route("/webhooks/stripe", webhook, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
