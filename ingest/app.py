"""The Starlette application: routes and lifespan, nothing else.

`uvicorn --factory ingest.app:create_app` builds it from the environment; `python -m ingest`
is the Procfile's `web`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
import structlog
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest import routes
from ingest.batcher import Batcher
from ingest.dramatiq_compat import RedisEnqueue
from ingest.enqueuer import Enqueuer
from ingest.metrics import IntakeMetrics
from ingest.probes import postgresql_probe, redis_probe
from shared.broker import make_broker
from shared.db import AsyncConnection
from shared.settings import Settings

log = structlog.get_logger("ingest.app")

# Grouped INSERTs in flight at once: one is being committed while the next one fills.
FLUSHES_IN_FLIGHT = 2
WEBHOOK_PATH = "/webhooks/stripe"
NAMED_PREFIX = WEBHOOK_PATH + "/"


class IntakeApp(Starlette):
    """Starlette, with `POST /webhooks/stripe` (and `/webhooks/stripe/<name>`) handed straight
    to its endpoint.

    The endpoints answer every error themselves, so Starlette's router and middleware (a good
    part of a request's CPU) are skipped on the hot path; anything else goes through Starlette.
    """

    def __init__(self, webhooks: dict[str, ASGIApp], unknown: ASGIApp, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._webhooks = webhooks  # by path
        self._unknown = unknown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            webhook = self._webhooks.get(path)
            if webhook is not None:
                await webhook(scope, receive, send)
                return
            if path.startswith(NAMED_PREFIX):
                await self._unknown(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> Starlette:
    """The receiver for `settings` (default: from the environment); opens nothing yet."""
    if settings is None:
        settings = Settings.from_env()
    settings.require_webhook_secrets()
    metrics = IntakeMetrics()
    broker = make_broker(settings)
    # Autocommit: each grouped INSERT is one statement, committed before its result arrives.
    pool: AsyncConnectionPool[AsyncConnection] = AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=FLUSHES_IN_FLIGHT,
        open=False,
        name="intake",
        kwargs={"row_factory": dict_row, "connect_timeout": 5, "autocommit": True},
        connection_class=psycopg.AsyncConnection[DictRow],
    )
    redis_enqueue = RedisEnqueue(broker, settings.redis_url)
    enqueuer = Enqueuer(redis_enqueue, metrics)
    batcher = Batcher(
        pool,
        max_rows=settings.intake_batch_max,
        window_s=settings.intake_batch_window_ms / 1000,
        max_inflight=FLUSHES_IN_FLIGHT,
        on_new=enqueuer.submit,
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Not waiting for PostgreSQL: the process starts and /readyz says what is missing.
        await pool.open(wait=False)
        batcher.start()
        enqueuer.start()
        log.info(
            "web.started",
            port=settings.port,
            secret_count=len(settings.webhook_secrets),
            endpoints=sorted(settings.endpoint_secrets),
        )
        try:
            yield
        finally:
            await batcher.close()
            await enqueuer.close()
            await pool.close()
            await redis_enqueue.aclose()
            broker.close()
            log.info("web.stopped")

    webhook = routes.WebhookEndpoint(settings, batcher.store, metrics)
    webhooks: dict[str, ASGIApp] = {WEBHOOK_PATH: webhook}
    for name in settings.endpoint_secrets:
        named = routes.WebhookEndpoint(settings, batcher.store, metrics, name)
        webhooks[NAMED_PREFIX + name] = named
    return IntakeApp(
        webhooks,
        routes.unknown_endpoint(metrics),
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            # Only for other methods (405): POSTs never reach Starlette's router.
            Route(NAMED_PREFIX + "{name}", webhook, methods=["POST"]),
            Route("/healthz", routes.healthz, methods=["GET"]),
            Route(
                "/readyz",
                routes.readyz(
                    [postgresql_probe(settings.database_url), redis_probe(redis_enqueue)]
                ),
                methods=["GET"],
            ),
            Route("/metrics", routes.metrics(metrics), methods=["GET"]),
        ],
        lifespan=lifespan,
    )
