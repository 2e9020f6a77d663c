"""`customers show`: one customer as the mirror has it, whether it has access and why, and its
events (including the disputes and refunds keyed by one of its charges)."""

from __future__ import annotations

import click

from stripe_ingest.cli import store
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.output import emit_json, pairs, shown, table

# What the table of each mirror section shows (JSON has every column).
COLUMNS: dict[str, list[str]] = {
    "customers": ["id", "name", "currency", "delinquent", "deleted", "created"],
    "subscriptions": ["id", "status", "current_period_end", "cancel_at_period_end", "created"],
    "invoices": ["id", "subscription_id", "status", "amount_due", "amount_paid", "created"],
    "charges": ["id", "status", "amount", "amount_refunded", "refunded", "disputed", "created"],
    "disputes": ["id", "charge_id", "status", "reason", "amount", "created"],
    "refunds": ["id", "charge_id", "status", "amount", "reason", "created"],
    "checkout_sessions": ["id", "mode", "status", "payment_status", "subscription_id", "created"],
}
TIMELINE = ["id", "type", "status", "created", "ordering_key", "attempts", "last_error"]


@click.group()
def customers() -> None:
    """One customer: mirror rows, access decision, events."""


@customers.command("show")
@click.argument("customer_id")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_context
def customers_show(ctx: Context, customer_id: str, limit: int, as_json: bool) -> None:
    """The customer's mirror rows, access decision and its reason, and its events, newest first."""
    f = store.Filter(customer=customer_id, limit=limit)
    with store.session(ctx.settings.database_url) as conn:
        mirror = store.mirror_of(conn, customer_id)
        access = store.access_of(conn, customer_id)
        events = store.list_events(conn, f)
        total = store.count_events(conn, f)
    if not events and not any(mirror.values()):
        raise click.ClickException(f"unknown customer: {customer_id} (no mirror rows, no events)")
    if as_json:
        emit_json(
            {
                "customer_id": customer_id,
                "access": access,
                "mirror": mirror,
                "events": events,
                "shown": len(events),
                "total": total,
            }
        )
        return
    decision = "yes" if access["has_access"] else "no"
    pairs(
        [
            ("customer", customer_id),
            ("access", f"{decision} ({access['reason']})"),
            ("until", access["until"]),
        ]
    )
    for name, rows in mirror.items():
        if rows:
            click.echo(f"\n{name.upper()}")
            table(rows, [c for c in COLUMNS[name] if c in rows[0]])
    click.echo("\nEVENTS (newest first; disputes and refunds keyed by its charges included)")
    table(events, TIMELINE, widths={"last_error": 50}, empty="(no events)")
    shown(len(events), total, cap=store.COUNT_CAP)
