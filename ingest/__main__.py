"""`python -m ingest`: the Procfile's `web` process (one uvicorn process on $PORT)."""

from __future__ import annotations

import importlib.util
import sys

import uvicorn

from ingest.app import create_app
from shared.logging import configure_logging
from shared.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
        settings.require_webhook_secrets()
    except SettingsError as e:
        sys.stderr.write(f"stripe-ingest web: {e}\n")
        return 2
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host="0.0.0.0",
        port=settings.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        workers=1,
        lifespan="on",
        log_config=None,  # our logging: uvicorn's records go to the root logger (warnings up)
        access_log=False,  # one structlog line per webhook request instead
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
