"""`python -m stripe_ingest.console`: the Procfile's `console` process."""

from __future__ import annotations

import sys

import uvicorn

from shared.logging import configure_logging
from shared.settings import Settings, SettingsError
from stripe_ingest.console.app import create_app


def main() -> int:
    try:
        settings = Settings.from_env()
        settings.require_console_token()
    except SettingsError as e:
        sys.stderr.write(f"stripe-ingest console: {e}\n")
        return 2
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.console_host,
        port=settings.console_port,
        log_config=None,
        access_log=False,  # paths name customers; actions log their own lines
        server_header=False,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
