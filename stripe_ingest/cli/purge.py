"""`purge`: delete finished events past retention, in batches; never pending or dead ones."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FrameType

import click

from stripe_ingest.cli import store
from stripe_ingest.cli.context import Context, confirm, json_option, pass_context
from stripe_ingest.cli.output import emit_json, human_duration
from stripe_ingest.cli.params import AGE

_START = datetime(1, 1, 1, tzinfo=UTC)
# Between batches by default: back to back, a purge keeps one PostgreSQL backend busy and took
# a quarter of the receiver's throughput on the bench machine; with this pause 1000-row batches
# still delete about 8,000 events a second (bench/RESULTS.md, Retention).
PAUSE = 0.1


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM while inside: set (the batch in progress commits; a pause ends), not
    raised."""
    stop = threading.Event()

    def note(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Events deleted per transaction.",
)
@click.option(
    "--pause",
    type=click.FloatRange(min=0),
    default=PAUSE,
    show_default=True,
    help="Seconds to wait between batches, leaving the database to intake (0: no wait).",
)
@json_option
@pass_context
def purge(
    ctx: Context,
    age: timedelta,
    dry_run: bool,
    yes: bool,
    batch_size: int,
    pause: float,
    as_json: bool,
) -> None:
    """Delete processed and ignored events finished more than AGE ago.

    Oldest first, one short transaction per batch; their attempt log goes with them; pending and
    dead events are never touched. Above REPLAY_CONFIRM_THRESHOLD events it asks first, unless
    --yes. SIGINT or SIGTERM stops it after the batch in progress (exit 1); run it again to go on.
    """
    settings = ctx.settings
    stopped = False
    with store.session(settings.database_url) as conn:
        cutoff = store.purge_cutoff(conn, age)
        count = store.count_purgeable(conn, cutoff)
        if not dry_run and count > settings.replay_confirm_threshold and not yes:
            confirm(f"Delete {count} finished events", settings.replay_confirm_threshold)
        deleted, after = 0, _START
        if not dry_run and count:
            with (
                _stop_requests() as stop,
                click.progressbar(
                    length=count, label="purging", file=sys.stderr, show_pos=True
                ) as bar,
            ):
                while not stop.is_set():
                    n, after = store.purge_batch(conn, cutoff, after, batch_size)
                    deleted += n
                    bar.update(n)
                    if n == 0:
                        break
                    stop.wait(pause)
                stopped = stop.is_set()
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
    if stopped:
        click.echo(f"purge: stopped after {deleted} event(s); run it again to go on", err=True)
        sys.exit(1)
