"""`replay`: put events back to `pending` and enqueue them, recorded in `replay_audit`.

The reset (status, attempts, error, backoff) and the removal of the dead letter commit in one
transaction per batch; the ids are enqueued after that commit. Should Redis not take them, they
are pending all the same and the sweeper enqueues them after its lease.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from shared.db import Connection
from shared.errors import error_line
from shared.settings import Settings
from stripe_ingest.cli import store
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.output import emit_json, table
from stripe_ingest.cli.params import WHEN


def operator() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class Enqueuer:
    """Enqueues after each commit; counts what Redis refused instead of failing the replay."""

    def __init__(self, settings: Settings) -> None:
        from shared.broker import make_broker

        self.broker = make_broker(settings)
        self.sent = 0
        self.failed = 0
        self.error: str | None = None

    def send(self, ids: Sequence[str]) -> None:
        from shared.broker import enqueue_events

        try:
            self.sent += enqueue_events(self.broker, ids)
        except Exception as e:  # redis-py raises several unrelated types
            self.failed += len(ids)
            self.error = error_line(e, with_type=False)

    def close(self, settings: Settings) -> None:
        self.broker.close()
        if self.failed:
            click.echo(
                f"warning: {self.failed} event(s) are pending but could not be enqueued "
                f"({self.error}); the sweeper enqueues them within "
                f"{settings.sweeper_lease_seconds:g}s of a working Redis",
                err=True,
            )


@click.command()
@click.argument("event_ids", nargs=-1)
@click.option("--dead", is_flag=True, help="Replay dead events matching the filters.")
@click.option("--type", "event_type", metavar="TYPE", help="With --dead: only this event type.")
@click.option("--customer", metavar="CUS_ID", help="With --dead: only this customer.")
@click.option("--since", type=WHEN, help="With --dead: died at or after WHEN (ISO, or 2h, 3d).")
@click.option("--limit", type=click.IntRange(min=1), help="With --dead: at most N events.")
@click.option("--force", is_flag=True, help="Also re-run processed and ignored events.")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--batch-size", type=click.IntRange(min=1), default=200, show_default=True)
@json_option
@pass_context
def replay(
    ctx: Context,
    event_ids: tuple[str, ...],
    dead: bool,
    event_type: str | None,
    customer: str | None,
    since: datetime | None,
    limit: int | None,
    force: bool,
    dry_run: bool,
    yes: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    """Put events back to pending and enqueue them.

    \b
    stripe-ingest replay evt_1 evt_2          the named events (dead or pending)
    stripe-ingest replay --force evt_1        also a processed or ignored one
    stripe-ingest replay --dead --type invoice.paid --since 2h --dry-run
    """
    if dead and event_ids:
        raise click.UsageError("give event ids or --dead, not both")
    if not dead and not event_ids:
        raise click.UsageError("give event ids, or --dead with optional filters")
    if not dead and (event_type or customer or since or limit):
        raise click.UsageError("--type, --customer, --since and --limit go with --dead")
    settings = ctx.settings
    with store.session(settings.database_url) as conn:
        if dead:
            flt = store.Filter(type=event_type, customer=customer, since=since, limit=limit)
            ids = store.dead_ids(conn, flt)
            mode, described = "dead", flt.as_json()
        else:
            ids = list(dict.fromkeys(event_ids))
            _check_ids(store.statuses(conn, ids), ids, force)
            mode, described = "ids", {"ids": ids}
        if dry_run or not ids:
            _report_plan(conn, ids, as_json, dry_run)
            return
        if dead and len(ids) > settings.replay_confirm_threshold and not yes:
            _confirm(len(ids), settings.replay_confirm_threshold)
        audit_id = store.start_audit(conn, operator(), mode, described, force, len(ids))
        enqueuer = Enqueuer(settings)
        done: list[str] = []
        try:
            with click.progressbar(
                length=len(ids), label="replaying", file=sys.stderr, show_pos=True
            ) as bar:
                for start in range(0, len(ids), batch_size):
                    batch = ids[start : start + batch_size]
                    replayed = store.replay_batch(conn, audit_id, batch, force)
                    enqueuer.send(replayed)
                    done.extend(replayed)
                    bar.update(len(batch))
            store.finish_audit(conn, audit_id)
        finally:
            enqueuer.close(settings)
    skipped = len(ids) - len(done)
    if as_json:
        emit_json(
            {
                "audit_id": audit_id,
                "matched": len(ids),
                "replayed": len(done),
                "enqueued": enqueuer.sent,
                "skipped": skipped,
                "ids": done,
            }
        )
    else:
        click.echo(f"replayed {len(done)} event(s), enqueued {enqueuer.sent} (audit #{audit_id})")
        if skipped:
            click.echo(f"{skipped} event(s) changed status meanwhile and were left alone")


def _check_ids(found: dict[str, str], ids: list[str], force: bool) -> None:
    missing = [i for i in ids if i not in found]
    if missing:
        raise click.ClickException("unknown event id(s): " + ", ".join(missing))
    finished = [i for i in ids if found[i] in ("processed", "ignored")]
    if finished and not force:
        listed = ", ".join(f"{i} ({found[i]})" for i in finished)
        raise click.ClickException(
            f"already finished: {listed}; pass --force to run them again "
            "(handlers are idempotent and stale-protected)"
        )


def _confirm(count: int, threshold: int) -> None:
    question = f"Replay {count} dead events (more than {threshold})?"
    if not sys.stdin.isatty():
        raise click.UsageError(f"{question} Not asking without a terminal: pass --yes to confirm.")
    click.confirm(question, abort=True, err=True)


def _report_plan(conn: Connection, ids: list[str], as_json: bool, dry_run: bool) -> None:
    rows: list[dict[str, Any]] = store.events_by_id(conn, ids) if ids else []
    if as_json:
        emit_json({"dry_run": dry_run, "matched": len(ids), "replayed": 0, "ids": ids})
        return
    if not ids:
        click.echo("no events match: nothing replayed")
        return
    table(rows, ["id", "type", "status", "attempts", "created", "ordering_key"])
    click.echo(f"dry run: would replay {len(ids)} event(s)")
