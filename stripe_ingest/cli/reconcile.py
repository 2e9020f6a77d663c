"""`reconcile`: compare the mirror's customers, subscriptions and invoices with Stripe's API.

For each table it lists Stripe's objects page by page (`stripe_lists`), writes each page through
the mirror's own upserts in a transaction that is rolled back, and reports how the rows changed
(`drift`). With `--fix`, the drifted rows are written again in a transaction that is kept,
stamped with the time of the read and `source_event_id = 'reconcile:<run>'`. Rows the mirror has
and Stripe did not list are fetched one by one (a deleted customer is no longer listed). Every run
is recorded in `reconcile_runs`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import click

from shared.db import Connection
from shared.errors import error_line
from stripe_ingest.cli import store
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.drift import KINDS, Drift, classify
from stripe_ingest.cli.operations import operator
from stripe_ingest.cli.output import cell, emit_json, pairs, table
from stripe_ingest.cli.params import WHEN
from stripe_ingest.cli.stripe_lists import Page, StripeReader
from worker.mirror import objects, versions


class MissingKey(click.ClickException):
    exit_code = 2


class Check:
    """One run's comparison, table by table."""

    def __init__(
        self, conn: Connection, reader: StripeReader, run_id: int, since: datetime | None, fix: bool
    ) -> None:
        self.conn, self.reader, self.since, self.fix = conn, reader, since, fix
        self.source = f"reconcile:{run_id}"
        self.drifts: list[Drift] = []
        self.listed: Counter[str] = Counter()

    def table(self, name: str) -> None:
        started = datetime.now(UTC)
        seen: set[str] = set()
        for page in self.reader.pages(name, self.since):
            seen.update(o["id"] for o in page.objects)
            self.listed[name] += len(page.objects)
            self.compare(name, page)
        for row in store.mirror_ids(self.conn, name, self.since, started, self.reader.livemode):
            if row["id"] in seen:
                continue
            found = self.reader.retrieve(name, row["id"])
            if found is None:
                self.drifts.append(Drift(name, row["id"], "not_at_stripe"))
                continue
            # A deleted customer comes back as {id, deleted}: keep the mode the mirror knows.
            found.objects[0].setdefault("livemode", row["livemode"])
            self.compare(name, found)

    def compare(self, name: str, page: Page) -> None:
        rows = [objects.row_of(name, o, page.read_at, self.source) for o in page.objects]
        if not rows:
            return
        before, after = store.write_objects(self.conn, name, rows, keep=False)
        found = [
            d
            for r in rows
            if (d := classify(name, r, before.get(r["id"]), after.get(r["id"]), page.read_at))
        ]
        self.drifts += found
        if not self.fix or not found:
            return
        ids = {d.id for d in found}
        _, fixed = store.write_objects(self.conn, name, [r for r in rows if r["id"] in ids], True)
        by_id = {r["id"]: r for r in rows}
        for d in found:
            row = fixed.get(d.id)
            d.fixed = (
                row is not None
                and row["source_event_id"] == self.source
                and objects.status_of(name, row) == objects.status_of(name, by_id[d.id])
            )

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for name in objects.TABLES:
            mine = [d for d in self.drifts if d.table == name]
            out[name] = {
                "listed": self.listed[name],
                **{k: sum(d.drift == k for d in mine) for k in KINDS},
                "fixed": sum(d.fixed for d in mine),
            }
        return out


@click.command()
@click.option("--since", type=WHEN, help="Only objects created at or after WHEN.")
@click.option("--fix", is_flag=True, help="Write Stripe's current objects over the drifted rows.")
@json_option
@pass_context
def reconcile(ctx: Context, since: datetime | None, fix: bool, as_json: bool) -> None:
    """Compare the mirror with Stripe's API (STRIPE_API_KEY); --fix repairs what differs.

    Exit 0 when the mirror matches Stripe (with --fix: once every drift is repaired), 1 when
    drift is found (with --fix: when some is left), 2 on bad usage or without STRIPE_API_KEY.

    \b
    stripe-ingest reconcile --since 30d
    stripe-ingest reconcile --fix --json
    """
    settings = ctx.settings
    if not settings.stripe_api_key:
        raise MissingKey("STRIPE_API_KEY is not set: reconcile reads Stripe's API")
    reader = StripeReader(settings)
    if not versions.is_known(reader.api_version):
        click.echo(
            f"warning: the Stripe client reads objects at API version {reader.api_version}, "
            "which the mirror does not know; fields may be missing",
            err=True,
        )
    with store.session(settings.database_url) as conn:
        run_id = store.start_reconcile(conn, operator(), since, reader.livemode, fix)
        check = Check(conn, reader, run_id, since, fix)
        try:
            for name in objects.TABLES:
                check.table(name)
        except BaseException as e:
            with contextlib.suppress(Exception):
                store.finish_reconcile(
                    conn,
                    run_id,
                    "failed",
                    check.counts(),
                    len(check.drifts),
                    [d.id for d in check.drifts if d.fixed],
                    error_line(e),
                )
            raise
        left = [d for d in check.drifts if not d.fixed]
        outcome = "clean" if not check.drifts else ("drift" if left else "fixed")
        fixed_ids = [d.id for d in check.drifts if d.fixed]
        store.finish_reconcile(conn, run_id, outcome, check.counts(), len(check.drifts), fixed_ids)
    result: dict[str, Any] = {
        "run_id": run_id,
        "livemode": reader.livemode,
        "since": since,
        "fix": fix,
        "requests": reader.requests,
        "tables": check.counts(),
        "drift": [d.as_json() for d in check.drifts],
        "drifted": len(check.drifts),
        "fixed": len(fixed_ids),
        "left": len(left),
    }
    if as_json:
        emit_json(result)
    else:
        _report(result, check.drifts, fix)
    if left:
        click.get_current_context().exit(1)


def _repair(d: Drift, fix: bool) -> str:
    if d.fixed:
        return "fixed"
    return "--fix" if d.fixable and not fix else "manual"


def _report(result: dict[str, Any], drifts: list[Drift], fix: bool) -> None:
    mode = "live" if result["livemode"] else "test"
    since = f", created since {cell(result['since'])}" if result["since"] else ""
    click.echo(f"reconcile #{result['run_id']} ({mode} mode{since})")
    summary = []
    for name, c in result["tables"].items():
        found = [f"{c[k]} {k.replace('_', ' ')}" for k in KINDS if c[k]]
        summary.append((name, f"{c['listed']} listed: " + (", ".join(found) or "no drift")))
    pairs(summary)
    if not drifts:
        click.echo("no drift: the mirror matches Stripe")
        return
    click.echo("")
    rows = [
        {
            "table": d.table,
            "id": d.id,
            "drift": d.drift,
            "mirror": d.mirror_status,
            "stripe": d.stripe_status,
            "repair": _repair(d, fix),
            "fields": ", ".join(d.fields) if d.drift != "missing" else None,
        }
        for d in drifts
    ]
    table(
        rows,
        ["table", "id", "drift", "mirror", "stripe", "repair", "fields"],
        widths={"fields": 60},
    )
    if fix:
        click.echo(f"\nfixed {result['fixed']} of {result['drifted']}; {result['left']} left")
    else:
        fixable = sum(d.fixable for d in drifts)
        click.echo(
            f"\n{result['drifted']} drifted; `stripe-ingest reconcile --fix` repairs {fixable}"
        )
