"""What every command shares: settings read once, when a command first needs them."""

from __future__ import annotations

import click

from shared.logging import configure_logging
from shared.settings import Settings, SettingsError


class Context:
    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.from_env()
            except SettingsError as e:
                raise click.UsageError(str(e)) from e
            configure_logging(self._settings)
        return self._settings


pass_context = click.make_pass_decorator(Context, ensure=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
