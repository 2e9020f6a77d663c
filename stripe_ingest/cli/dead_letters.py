"""`dead-letters list|show|summary|resolve`: what is dead, why, and closing it."""

from __future__ import annotations

from datetime import datetime

import click

from stripe_ingest.cli import operations, store
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.inspect import filters, history_table, load
from stripe_ingest.cli.operations import Refused
from stripe_ingest.cli.output import dumps, emit_json, pairs, shown, table
from stripe_ingest.cli.params import WHEN

_resolved_option = click.option(
    "--resolved", is_flag=True, help="The resolved dead letters instead of the open ones."
)


@click.group("dead-letters")
def dead_letters() -> None:
    """What is dead, and why; resolve what should not be replayed."""


@dead_letters.command("list")
@filters
@click.option("--since", type=WHEN, help="Died at or after WHEN (ISO date/time, or 2h, 3d).")
@_resolved_option
@json_option
@pass_context
def dead_list(
    ctx: Context,
    event_type: str | None,
    customer: str | None,
    account: str | None,
    limit: int,
    since: datetime | None,
    resolved: bool,
    as_json: bool,
) -> None:
    """Open dead letters (events dead now and not resolved), oldest first."""
    f = store.Filter(
        type=event_type,
        customer=customer,
        account=account,
        since=since,
        limit=limit,
        resolved=resolved,
    )
    with store.session(ctx.settings.database_url) as conn:
        rows = store.list_dead(conn, f)
        total = store.count_dead(conn, f)
    if as_json:
        emit_json({"dead_letters": rows, "shown": len(rows), "total": total})
        return
    columns = ["event_id", "type", "ordering_key", "dead_at", "attempts", "error"]
    if resolved:
        columns = [*columns[:4], "resolved_at", "resolved_by", "resolution"]
    table(
        rows,
        columns,
        widths={"error": 60, "resolution": 40},
        empty="no resolved dead letters" if resolved else "no open dead letters",
    )
    shown(len(rows), total)


@dead_letters.command("summary")
@click.option("--type", "event_type", metavar="TYPE", help="Only this event type.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@_resolved_option
@json_option
@pass_context
def dead_summary(
    ctx: Context, event_type: str | None, limit: int, resolved: bool, as_json: bool
) -> None:
    """Open dead letters grouped by event type and error, the largest groups first."""
    f = store.Filter(type=event_type, limit=limit, resolved=resolved)
    with store.session(ctx.settings.database_url) as conn:
        groups = store.summary(conn, f)
        total = store.count_groups(conn, f)
        letters = store.count_dead(conn, store.Filter(type=event_type, resolved=resolved))
    if as_json:
        emit_json({"groups": groups, "shown": len(groups), "total": total, "dead": letters})
        return
    table(
        groups,
        ["count", "type", "oldest", "newest", "example", "error"],
        widths={"error": 70},
        empty="no resolved dead letters" if resolved else "no open dead letters",
    )
    shown(len(groups), total)
    if groups:
        click.echo(f"{letters} dead letter(s) in {total} group(s)")


@dead_letters.command("show")
@click.argument("event_id")
@json_option
@pass_context
def dead_show(ctx: Context, event_id: str, as_json: bool) -> None:
    """One dead event: the error, its traceback, attempt history and payload."""
    with store.session(ctx.settings.database_url) as conn:
        row = load(conn, event_id)
        dead = store.dead_letter(conn, event_id)
        history = store.attempts(conn, event_id)
    if dead is None:
        raise click.ClickException(f"{event_id} is not dead (status {row['status']})")
    payload = row.pop("payload")
    if as_json:
        emit_json({"dead_letter": dead, "event": row, "attempts": history, "payload": payload})
        return
    items = [
        ("event_id", event_id),
        ("type", row["type"]),
        ("ordering_key", row["ordering_key"]),
        ("created", row["created"]),
        ("dead_at", dead["dead_at"]),
        ("attempts", dead["attempts"]),
        ("error", dead["error"]),
    ]
    if dead["resolved_at"]:
        items += [
            ("resolved_at", dead["resolved_at"]),
            ("resolved_by", dead["resolved_by"]),
            ("resolution", dead["resolution"]),
        ]
    pairs(items)
    click.echo("\nTRACEBACK")
    click.echo((dead["traceback"] or "(none recorded)").rstrip())
    history_table(history)
    click.echo("\nPAYLOAD")
    click.echo(dumps(payload))
    click.echo(f"\nAfter fixing the cause: stripe-ingest replay {event_id}")
    if not dead["resolved_at"]:
        click.echo(
            f'Not to be replayed: stripe-ingest dead-letters resolve {event_id} --reason "..."'
        )


@dead_letters.command("resolve")
@click.argument("event_ids", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why it is closed without a replay (kept, audited).")
@json_option
@pass_context
def dead_resolve(ctx: Context, event_ids: tuple[str, ...], reason: str, as_json: bool) -> None:
    """Close dead letters without replaying them: the events stay dead, the dead letters say who
    resolved them, when and why, and stop counting as open (stats, metrics, alerts).

    \b
    stripe-ingest dead-letters resolve evt_1 evt_2 --reason "test-mode noise, see INC-42"
    """
    try:
        reason = operations.clean_reason(reason)
    except Refused as e:
        raise click.BadParameter(str(e), param_hint="--reason") from e
    with store.session(ctx.settings.database_url) as conn:
        try:
            result = operations.resolve(conn, event_ids, who=operations.operator(), reason=reason)
        except Refused as e:
            raise click.ClickException(str(e)) from e
    if as_json:
        emit_json(
            {"resolved": result.ids, "already_resolved": result.already, "changed": result.changed}
        )
        return
    click.echo(f"resolved {len(result.ids)} dead letter(s)")
    for event_id, who in result.already.items():
        click.echo(f"{event_id} was resolved already (by {who}): left as it was")
    if result.changed:
        click.echo(
            "changed meanwhile (replayed?), not resolved: " + ", ".join(result.changed), err=True
        )
