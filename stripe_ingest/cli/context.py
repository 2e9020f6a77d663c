"""What every command shares: settings read once, when a command first needs them."""

from __future__ import annotations

import sys

import click

from shared.logging import configure_logging
from shared.settings import Settings, SettingsError


class SettingsProblem(click.ClickException):
    """A setting is missing or malformed: one line, exit 2 (bad usage of the deployment)."""

    exit_code = 2


class Context:
    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.from_env()
            except SettingsError as e:
                raise SettingsProblem(str(e)) from e
            configure_logging(self._settings)
        return self._settings


pass_context = click.make_pass_decorator(Context, ensure=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def confirm(question: str, threshold: int) -> None:
    """Ask before acting on more than `threshold` events (REPLAY_CONFIRM_THRESHOLD); without a
    terminal, refuse (exit 2) and name `--yes`."""
    question = f"{question} (more than {threshold})?"
    if not sys.stdin.isatty():
        raise click.UsageError(f"{question} Not asking without a terminal: pass --yes to confirm.")
    click.confirm(question, abort=True, err=True)
