"""The ceiling: a Starlette endpoint that reads the body and answers 200.

uvicorn bench.servers.bare:app --port 8001 --no-access-log
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def webhook(request: Request) -> Response:
    await request.body()
    return Response(b'{"received": true}', media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(
    routes=[
        Route("/webhooks/stripe", webhook, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
