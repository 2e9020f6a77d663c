"""`replay`: put events back to `pending` and enqueue them, recorded in `replay_audit`.

The reset (status, attempts, error, backoff) and the removal of the dead letter commit in one
transaction per batch; the ids are enqueued after that commit. Should Redis not take them, they
are pending all the same and the sweeper enqueues them after its lease.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from shared.db import Connection
from stripe_ingest.cli import operations, store
from stripe_ingest.cli.context import Context, confirm, json_option, pass_context
from stripe_ingest.cli.operations import Refused
from stripe_ingest.cli.output import emit_json, table
from stripe_ingest.cli.params import WHEN


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
            try:
                operations.check_replayable(conn, ids, force)
            except Refused as e:
                raise click.ClickException(str(e)) from e
            mode, described = "ids", {"ids": ids}
        if dry_run or not ids:
            _report_plan(conn, ids, as_json, dry_run)
            return
        if dead and len(ids) > settings.replay_confirm_threshold and not yes:
            confirm(f"Replay {len(ids)} dead events", settings.replay_confirm_threshold)
        with click.progressbar(
            length=len(ids), label="replaying", file=sys.stderr, show_pos=True
        ) as bar:
            result = operations.replay(
                conn,
                settings,
                ids,
                who=operations.operator(),
                mode=mode,
                described=described,
                force=force,
                batch_size=batch_size,
                progress=bar.update,
            )
    if result.warning:
        click.echo(f"warning: {result.warning}", err=True)
    if as_json:
        emit_json(
            {
                "audit_id": result.audit_id,
                "matched": result.matched,
                "replayed": len(result.ids),
                "enqueued": result.enqueued,
                "skipped": result.skipped,
                "ids": result.ids,
            }
        )
    else:
        click.echo(
            f"replayed {len(result.ids)} event(s), enqueued {result.enqueued} "
            f"(audit #{result.audit_id})"
        )
        if result.skipped:
            click.echo(f"{result.skipped} event(s) changed status meanwhile and were left alone")


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
