"""`events list|show` and `stats`: what is stored, what failed, why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from shared.db import Connection
from stripe_ingest.cli import store
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.output import cell, dumps, emit_json, human_duration, pairs, shown, table
from stripe_ingest.cli.params import WHEN

_filters = [
    click.option("--type", "event_type", metavar="TYPE", help="Only this event type."),
    click.option(
        "--customer", metavar="CUS_ID", help="Only events of this customer (ordering key)."
    ),
    click.option(
        "--account", metavar="ACCT_ID", help="Only events of this Connect account (`account`)."
    ),
    click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True),
]


def filters(fn: Any) -> Any:
    for option in reversed(_filters):
        fn = option(fn)
    return fn


@click.group()
def events() -> None:
    """Inspect stored events."""


@events.command("list")
@click.option("--status", type=click.Choice(store.STATUSES), help="Only events in this status.")
@filters
@click.option("--since", type=WHEN, help="Created at or after WHEN (ISO date/time, or 2h, 3d).")
@json_option
@pass_context
def events_list(
    ctx: Context,
    status: str | None,
    event_type: str | None,
    customer: str | None,
    account: str | None,
    limit: int,
    since: datetime | None,
    as_json: bool,
) -> None:
    """Stored events, newest first."""
    f = store.Filter(
        status=status, type=event_type, customer=customer, account=account, since=since, limit=limit
    )
    with store.session(ctx.settings.database_url) as conn:
        rows = store.list_events(conn, f)
        total = store.count_events(conn, f)
    if as_json:
        capped = {"total_capped": True} if total > store.COUNT_CAP else {}
        emit_json({"events": rows, "shown": len(rows), "total": total, **capped})
        return
    table(
        rows,
        ["id", "type", "status", "attempts", "created", "ordering_key", "last_error"],
        widths={"last_error": 50},
        empty="no events match",
    )
    shown(len(rows), total, cap=store.COUNT_CAP)


def load(conn: Connection, event_id: str) -> store.Row:
    row = store.get_event(conn, event_id)
    if row is None:
        raise click.ClickException(f"unknown event id: {event_id}")
    return row


@events.command("show")
@click.argument("event_id")
@json_option
@pass_context
def events_show(ctx: Context, event_id: str, as_json: bool) -> None:
    """One event: its row, attempt history and payload."""
    with store.session(ctx.settings.database_url) as conn:
        row = load(conn, event_id)
        history = store.attempts(conn, event_id)
        dead = store.dead_letter(conn, event_id)
        replays = store.replays_of(conn, event_id)
    payload = row.pop("payload")
    if as_json:
        emit_json(
            {
                "event": row,
                "attempts": history,
                "dead_letter": dead,
                "replays": replays,
                "payload": payload,
            }
        )
        return
    pairs(list(row.items()))
    history_table(history)
    if dead:
        click.echo("\nDEAD LETTER")
        pairs([("dead_at", dead["dead_at"]), ("error", dead["error"])])
        if dead["resolved_at"]:
            pairs(
                [
                    ("resolved", f"{cell(dead['resolved_at'])} by {dead['resolved_by']}"),
                    ("resolution", dead["resolution"]),
                ]
            )
    if replays:
        click.echo("\nREPLAYS")
        table(replays, ["id", "started_at", "requested_by", "via", "mode", "forced"])
    click.echo("\nPAYLOAD")
    click.echo(dumps(payload))


def history_table(history: list[store.Row]) -> None:
    click.echo("\nATTEMPTS")
    table(
        history,
        ["attempt", "started_at", "finished_at", "outcome", "worker", "error"],
        widths={"error": 60},
        empty="(no attempts logged)",
    )


@click.command()
@click.option(
    "--minutes", type=click.IntRange(min=1), default=5, show_default=True, help="Throughput window."
)
@json_option
@pass_context
def stats(ctx: Context, minutes: int, as_json: bool) -> None:
    """Counts by status, backlog, oldest pending age, dead count, recent throughput."""
    with store.session(ctx.settings.database_url) as conn:
        s = store.stats(conn, minutes)
    if as_json:
        emit_json(s)
        return
    print_stats(s)


def print_stats(s: dict[str, Any]) -> None:
    t = s["throughput"]
    pairs(
        [
            *[(status, n) for status, n in s["counts"].items()],
            ("total", s["total"]),
            ("backlog", f"{s['backlog']} pending ({s['waiting_retry']} waiting for a retry)"),
            ("oldest pending", _oldest(s)),
            ("dead letters", f"{s['dead']} open ({s['dead_resolved']} resolved)"),
            (
                "throughput",
                f"{t['finished']} finished in {t['minutes']} min ({t['per_minute']}/min)",
            ),
        ]
    )
    unknown = s.get("unknown_api_versions") or []
    if unknown:
        named = ", ".join(
            f"{u['api_version']} ({u['events']} event{'' if u['events'] == 1 else 's'})"
            for u in unknown
        )
        click.echo(f"api versions not known to the mirror: {named}")


def _oldest(s: dict[str, Any]) -> str:
    """The age from the latest enqueue (receipt or replay), and from the first receipt."""
    if s["oldest_pending_age_seconds"] is None:
        return "-"
    return (
        f"{human_duration(s['oldest_pending_age_seconds'])} since enqueued"
        f" ({human_duration(s['oldest_pending_since_receipt_seconds'])} since receipt)"
    )
