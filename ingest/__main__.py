"""`python -m ingest`: the Procfile's `web` process (one uvicorn process on $PORT).

Limits (ingest.uvicorn_protocol): request heads over 64 KB get 431; a head or body not received
within WEBHOOK_READ_TIMEOUT_SECONDS (default 30) gets 408 and its connection closed; idle
keep-alive connections close after WEB_KEEP_ALIVE_SECONDS (default 5); over WEB_MAX_CONCURRENCY
(default 1000) connections or running requests, a request gets 503 `{"error": "unavailable"}`.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from typing import Any

import uvicorn

from ingest.app import create_app
from ingest.body import MAX_HEAD_BYTES
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError

GC_THRESHOLDS = (20_000, 20, 50)


def _http_protocol(settings: Settings) -> Any:
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from ingest.uvicorn_protocol import protocol

    return protocol(settings.webhook_read_timeout_seconds, settings.web_max_concurrency)


def main() -> int:
    try:
        settings = Settings.from_env()
        settings.require_webhook_secrets()
    except SettingsError as e:
        sys.stderr.write(f"stripe-ingest web: {e}\n")
        return 2
    configure_logging(settings)
    app = create_app(settings)
    # What is loaded by now lives as long as the process: keep it out of the collector's passes,
    # and collect the young generation less often (each request leaves short-lived cycles only
    # when it fails). A full pass over every module's objects under load shows in the p99.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    http = _http_protocol(settings)
    uvicorn.run(
        app,
        host="0.0.0.0",
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=http,
        workers=1,
        lifespan="on",
        log_config=None,  # our logging: uvicorn's records go to the root logger (warnings up)
        access_log=False,  # one structlog line per webhook request instead
        server_header=False,
        proxy_headers=False,  # the endpoint reads no client address
        backlog=2048,
        timeout_keep_alive=settings.web_keep_alive_seconds,
        # Our protocol keeps the concurrency limit itself (answering the contract's 503 body);
        # uvicorn's own, and its h11 head limit, serve when httptools is missing.
        limit_concurrency=settings.web_max_concurrency if http == "h11" else None,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
