"""`backfill`: pull events from Stripe's Events API into the intake path.

Stripe lists events newest first. A run first fetches every page into `backfill_events`: its
window cut into time segments read concurrently (`--parallel`) under one client-side rate limit
(`--rate`), each page committed with its segment's cursor (backfill_fetch.py). Then it stores
them oldest first, in chunks, with the receiver's own insert (`ON CONFLICT DO NOTHING`) and
enqueues the new ids after each commit. Each chunk commits with the run's progress in
`backfill_runs`, so an interrupted run resumes where it stopped: the next `backfill` with the
same `--types`, `--undelivered-only`, `--account` and `--since` picks it up, reads only the
segments it had not finished (each from its last page) and stores what is left. A different
`--since` (beyond SINCE_SLACK, so that `--since 2h` run again soon still matches) is refused
unless `--resume` (keep the run's window) or `--fresh` (abandon it) says which. With `--account
acct_...` it reads a connected account's events (`Stripe-Account`), stored with that account as
a Connect endpoint's webhooks would have them.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import click
import orjson

from ingest.event import MalformedEvent, event_row
from ingest.storage import insert_events_sync
from shared.db import Connection
from shared.settings import Settings
from stripe_ingest.cli import store
from stripe_ingest.cli.backfill_fetch import Fetcher, Stats, default_rate
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.operations import Enqueuer, operator
from stripe_ingest.cli.output import emit_json
from stripe_ingest.cli.params import WHEN

RETENTION = timedelta(days=30)
MAX_TYPES = 20  # Stripe's limit on types[]
SINCE_SLACK = timedelta(minutes=5)


def _types(values: tuple[str, ...]) -> list[str]:
    types = sorted({t.strip() for v in values for t in v.split(",") if t.strip()})
    if len(types) > MAX_TYPES:
        raise click.BadParameter(f"Stripe accepts at most {MAX_TYPES} types", param_hint="--types")
    return types


@click.command()
@click.option("--since", type=WHEN, required=True, help="Events created at or after WHEN.")
@click.option("--types", "types_", multiple=True, metavar="TYPE[,TYPE]", help="Only these types.")
@click.option("--undelivered-only", is_flag=True, help="Only events Stripe failed to deliver.")
@click.option(
    "--account", metavar="ACCT_ID", help="A connected account's events (sent as Stripe-Account)."
)
@click.option("--fresh", is_flag=True, help="Abandon an interrupted run instead of resuming it.")
@click.option(
    "--resume", is_flag=True, help="Resume an interrupted run even if its --since differs."
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Segments of the window read at once (1: one sequential listing).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    help="Requests a second to Stripe, all segments together (default: 90% of Stripe's limit, "
    "22.5 with a test-mode key, 90 live).",
)
@click.option("--chunk-size", type=click.IntRange(min=1), default=500, show_default=True)
@json_option
@pass_context
def backfill(
    ctx: Context,
    since: datetime,
    types_: tuple[str, ...],
    undelivered_only: bool,
    account: str | None,
    fresh: bool,
    resume: bool,
    parallel: int,
    rate: float | None,
    chunk_size: int,
    as_json: bool,
) -> None:
    """Fetch events from Stripe (STRIPE_API_KEY) and store the missing ones.

    \b
    stripe-ingest backfill --since 6h --undelivered-only
    stripe-ingest backfill --since 2024-05-01T02:00Z --types invoice.paid,invoice.payment_failed
    stripe-ingest backfill --since 1d --account acct_1Nv0FGQ9RKHgCVdK
    """
    settings = ctx.settings
    if not settings.stripe_api_key:
        raise click.UsageError("STRIPE_API_KEY is not set: backfill reads Stripe's Events API")
    types = _types(types_)
    if fresh and resume:
        raise click.UsageError("give --fresh or --resume, not both")
    if account is not None and not account.startswith("acct_"):
        raise click.BadParameter(
            "a connected account's id starts with acct_", param_hint="--account"
        )
    with store.session(settings.database_url) as conn:
        run = store.open_run(conn, types, undelivered_only, account)
        if run is not None and fresh:
            store.abandon_run(conn, run["id"])
            run = None
        if run is not None and not resume and abs(run["since"] - since) > SINCE_SLACK:
            raise click.UsageError(
                f"backfill run #{run['id']} was interrupted with --since "
                f"{run['since'].isoformat()} ({run['fetched']} fetched), not "
                f"{since.isoformat()}: pass --resume to finish it with its own window, "
                "or --fresh to abandon it and start over"
            )
        if run is None:
            run = store.create_run(conn, operator(), since, types, undelivered_only, account)
        else:
            click.echo(
                f"resuming backfill run #{run['id']} (since {run['since'].isoformat()}, "
                f"{run['fetched']} fetched, phase {run['phase']}); --fresh starts over",
                err=True,
            )
        if run["since"] < datetime.now(UTC) - RETENTION:
            click.echo(
                "warning: Stripe's Events API only keeps the last 30 days; "
                "older events cannot be fetched",
                err=True,
            )
        stats = Stats(fetched=int(run["fetched"]))
        if run["phase"] == "fetching":
            fetcher = Fetcher(
                settings, run, parallel, rate or default_rate(settings.stripe_api_key)
            )
            stats = fetcher.fetch(conn)
        new, dupes, skipped, enqueuer = _store(conn, settings, run["id"], chunk_size, account)
        done = store.finish_run(conn, run["id"])
    result = {
        "run_id": done["id"],
        "since": done["since"],
        "types": done["types"],
        "undelivered_only": done["undelivered_only"],
        "account": done["account"],
        "fetched": done["fetched"],
        "new": done["new_events"],
        "duplicates": done["duplicates"],
        "malformed": skipped,
        "enqueued": enqueuer.sent,
        "this_invocation": {
            "new": new,
            "duplicates": dupes,
            "pages": stats.pages,
            "requests": stats.requests,
            "rate_limited": stats.rate_limited,
        },
    }
    if as_json:
        emit_json(result)
    else:
        click.echo(
            f"backfill #{done['id']}: fetched {done['fetched']}, new {done['new_events']}, "
            f"duplicates {done['duplicates']}, enqueued {enqueuer.sent}"
            + (f", malformed {skipped}" if skipped else "")
        )


def _store(
    conn: Connection, settings: Settings, run_id: int, chunk_size: int, account: str | None
) -> tuple[int, int, int, Enqueuer]:
    total = store.staged_count(conn, run_id)
    malformed: list[int] = [0]

    def insert(c: Connection, payloads: list[str]) -> set[str]:
        rows = []
        for p in payloads:
            try:
                row = event_row(orjson.loads(p), p)
            except (MalformedEvent, orjson.JSONDecodeError):
                malformed[0] += 1
                continue
            # A connected account's event, read with Stripe-Account, is that account's.
            rows.append(replace(row, account=row.account or account) if account else row)
        return insert_events_sync(c, rows)

    new = dupes = 0
    enqueuer = Enqueuer(settings)
    try:
        with click.progressbar(
            length=total, label="storing", file=sys.stderr, show_pos=True
        ) as bar:
            while True:
                taken, ids = store.store_chunk(conn, run_id, chunk_size, insert)
                if taken == 0:
                    break
                enqueuer.send(sorted(ids))
                new += len(ids)
                dupes += taken - len(ids)
                bar.update(taken)
    finally:
        warning = enqueuer.close()
        if warning:
            click.echo(f"warning: {warning}", err=True)
    return new, dupes - malformed[0], malformed[0], enqueuer
