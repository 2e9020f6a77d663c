"""The console's Starlette application: routes, authentication, templates, error pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import DatabaseUnavailable, Outage
from shared.settings import Settings
from stripe_ingest.cli.output import human_duration
from stripe_ingest.cli.store import StoreError
from stripe_ingest.console import actions, pages
from stripe_ingest.console.auth import Auth, RequireAuth
from stripe_ingest.console.web import problem

log = structlog.get_logger("console.app")

# No scripts at all; styles and images from this origin only (the chart is inline SVG).
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self';"
        b" form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def ago(seconds: Any) -> str:
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    return human_duration(seconds) if seconds is not None else "-"


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("stripe_ingest.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(when=when, ago=ago)
    return Jinja2Templates(env=env)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(request, exc.status_code, exc.detail)


async def _outage(request: Request, exc: Exception) -> Response:
    what = "the database" if isinstance(exc, DatabaseUnavailable) else "Redis"
    log.warning("console.outage", error=type(exc).__name__)
    return problem(request, 503, f"{what} does not answer: {exc}")


async def _store_error(request: Request, exc: Exception) -> Response:
    log.error("console.store_error", error=type(exc.__cause__ or exc).__name__)
    return problem(request, 500, f"the query failed: {exc}")


def create_app(settings: Settings) -> Starlette:
    auth = Auth(settings.require_console_token())
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/events", pages.events, name="events"),
        Route("/events/{event_id}", pages.event, name="event"),
        Route("/events/{event_id}/replay", actions.replay, methods=["POST"], name="replay"),
        Route("/dead-letters", pages.dead_letters, name="dead_letters"),
        Route("/dead-letters/bulk", actions.bulk, methods=["POST"], name="bulk"),
        Route(
            "/dead-letters/{event_id}/resolve", actions.resolve, methods=["POST"], name="resolve"
        ),
        Route("/customers", pages.find_customer, name="find_customer"),
        Route("/customers/{customer_id}", pages.customer, name="customer"),
        Route("/login", pages.login, name="login"),
        Route("/login", actions.login, methods=["POST"]),
        Route("/logout", actions.logout, methods=["POST"], name="logout"),
        Route("/healthz", pages.healthz),
        Mount(
            "/static", StaticFiles(packages=[("stripe_ingest.console", "static")]), name="static"
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(RequireAuth, auth=auth)],
        exception_handlers={
            HTTPException: _http_error,
            Outage: _outage,
            StoreError: _store_error,
        },
    )
    app.state.settings = settings
    app.state.auth = auth
    app.state.templates = templates()
    return app
