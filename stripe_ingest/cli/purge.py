"""`purge`: delete finished events past retention, in batches; never pending or dead ones."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from stripe_ingest.cli import store
from stripe_ingest.cli.context import Context, confirm, json_option, pass_context
from stripe_ingest.cli.output import emit_json, human_duration
from stripe_ingest.cli.params import AGE


@click.command()
@click.option(
    "--older-than",
    "age",
    type=AGE,
    required=True,
    help="Processed/ignored longer ago than AGE (30d, 12h).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@json_option
@pass_context
def purge(
    ctx: Context, age: timedelta, dry_run: bool, yes: bool, batch_size: int, as_json: bool
) -> None:
    """Delete processed and ignored events finished more than AGE ago.

    Their attempt log goes with them; pending and dead events are never touched. Above
    REPLAY_CONFIRM_THRESHOLD events it asks first, unless --yes.
    """
    settings = ctx.settings
    with store.session(settings.database_url) as conn:
        count = store.count_purgeable(conn, age)
        if not dry_run and count > settings.replay_confirm_threshold and not yes:
            confirm(f"Delete {count} finished events", settings.replay_confirm_threshold)
        deleted = 0
        if not dry_run and count:
            with click.progressbar(
                length=count, label="purging", file=sys.stderr, show_pos=True
            ) as bar:
                while True:
                    n = store.purge_batch(conn, age, batch_size)
                    if n == 0:
                        break
                    deleted += n
                    bar.update(n)
    if as_json:
        emit_json(
            {
                "older_than_seconds": age.total_seconds(),
                "dry_run": dry_run,
                "matched": count,
                "deleted": deleted,
            }
        )
    else:
        ago = human_duration(age.total_seconds())
        done = f"dry run: would delete {count}" if dry_run else f"deleted {deleted}"
        click.echo(f"{done} event(s) finished over {ago} ago")
