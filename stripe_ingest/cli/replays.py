"""`replays list`: the replay audit, who replayed what and when."""

from __future__ import annotations

import click
import orjson

from stripe_ingest.cli import store
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.output import emit_json, shown, table


@click.group()
def replays() -> None:
    """The replay audit."""


@replays.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_context
def replays_list(ctx: Context, limit: int, as_json: bool) -> None:
    """Replays, newest first: who asked (and through the CLI or the console), what matched."""
    with store.session(ctx.settings.database_url) as conn:
        rows = store.list_replays(conn, limit)
        total = store.count_replays(conn)
    if as_json:
        emit_json({"replays": rows, "shown": len(rows), "total": total})
        return
    for row in rows:
        flt = {k: v for k, v in row["filter"].items() if v not in (None, False, 0)}
        row["filter"] = orjson.dumps(flt).decode() if flt else "-"
    table(
        rows,
        ["id", "started_at", "requested_by", "via", "mode", "matched", "replayed", "filter"],
        widths={"filter": 60},
        empty="no replays",
    )
    shown(len(rows), total)
