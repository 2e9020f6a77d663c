"""`stripe-ingest`: exit 0 on success, 1 on failure, 2 on bad usage."""

from __future__ import annotations

import sys

import click

from shared.db import DatabaseUnavailable
from shared.logging import configure_logging
from shared.migrate import migrate as run_migrations
from shared.settings import Settings, SettingsError


class Context:
    """Settings are read once, when a command first needs them."""

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Operate the stripe-ingest pipeline."""


@cli.command()
@pass_context
def migrate(ctx: Context) -> None:
    """Apply the SQL files in migrations/ in order, once each."""
    applied = run_migrations(ctx.settings.database_url)
    click.echo(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "")
    )


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="stripe-ingest", standalone_mode=True)
    except DatabaseUnavailable as e:
        click.echo(f"error: database unavailable: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
