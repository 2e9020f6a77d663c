"""`python -m ingest`: the Procfile's `web` process (one uvicorn process on $PORT)."""

from __future__ import annotations

import gc
import importlib.util
import sys
from typing import Any

import uvicorn

from ingest.app import create_app
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError

GC_THRESHOLDS = (20_000, 20, 50)


def _http_protocol() -> Any:
    if importlib.util.find_spec("httptools") is None:
        return "h11"
    from ingest.uvicorn_protocol import JoinedWritesProtocol

    return JoinedWritesProtocol


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
    uvicorn.run(
        app,
        host="0.0.0.0",
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=_http_protocol(),
        workers=1,
        lifespan="on",
        log_config=None,  # our logging: uvicorn's records go to the root logger (warnings up)
        access_log=False,  # one structlog line per webhook request instead
        server_header=False,
        proxy_headers=False,  # the endpoint reads no client address
        backlog=2048,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
