"""`stripe-ingest`: exit 0 on success, 1 on failure, 2 on bad usage."""

from __future__ import annotations

import sys

import click
import redis

from shared.errors import DatabaseUnavailable, Outage, error_line
from shared.migrate import MigrationError
from shared.migrate import migrate as run_migrations
from stripe_ingest import __version__
from stripe_ingest.cli.backfill import backfill
from stripe_ingest.cli.context import Context, pass_context
from stripe_ingest.cli.customers import customers
from stripe_ingest.cli.dead_letters import dead_letters
from stripe_ingest.cli.demo import demo
from stripe_ingest.cli.inspect import events, stats
from stripe_ingest.cli.operations import Refused
from stripe_ingest.cli.purge import purge
from stripe_ingest.cli.reconcile import reconcile
from stripe_ingest.cli.replay import replay
from stripe_ingest.cli.replays import replays

__all__ = ["Context", "cli", "main", "pass_context"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="stripe-ingest", message="%(prog)s %(version)s"
)
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


for command in (
    events,
    dead_letters,
    customers,
    stats,
    replay,
    replays,
    backfill,
    reconcile,
    purge,
    demo,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="stripe-ingest", standalone_mode=True)
    except Outage as e:
        what = "database" if isinstance(e, DatabaseUnavailable) else "redis"
        click.echo(f"error: {what} unavailable: {e}", err=True)
        sys.exit(1)
    except (MigrationError, Refused) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except redis.RedisError as e:  # a command that reaches Redis outside the Enqueuer
        click.echo(f"error: redis unavailable: {error_line(e, with_type=False)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
