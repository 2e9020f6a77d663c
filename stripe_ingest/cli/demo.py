"""`demo`: send a signed, realistic scenario to a running receiver, wait for the workers, and print
the resulting billing mirror and stats."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

import click
import redis

from shared.broker import QUEUE_NAME, queue_key
from shared.db import Connection
from shared.settings import Settings, SettingsError
from stripe_ingest.cli import scenario, store
from stripe_ingest.cli.context import Context, json_option, pass_context
from stripe_ingest.cli.inspect import print_stats
from stripe_ingest.cli.output import emit_json, table

# Columns worth showing, when the mirror has them; the key column selects the demo's rows.
MIRROR: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "subscriptions": (
        ("customer_id",),
        (
            "id",
            "customer_id",
            "status",
            "cancel_at_period_end",
            "canceled_at",
            "current_period_end",
        ),
    ),
    "invoices": (
        ("customer_id",),
        (
            "id",
            "customer_id",
            "subscription_id",
            "status",
            "amount_paid",
            "amount_remaining",
            "attempt_count",
        ),
    ),
    "charges": (
        ("customer_id",),
        (
            "id",
            "customer_id",
            "status",
            "amount",
            "amount_refunded",
            "refunded",
            "disputed",
            "failure_code",
        ),
    ),
    "disputes": (
        ("charge_id", "charge"),
        ("id", "charge_id", "customer_id", "status", "reason", "amount"),
    ),
    "customer_access": (("customer_id",), ("customer_id", "has_access", "reason", "until")),
}


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme: `t=<ts>,v1=<HMAC-SHA256 of "t.payload">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _post(url: str, body: bytes, signature: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@click.command()
@click.option(
    "--url",
    help="The receiver.  [default: http://127.0.0.1:$PORT, PORT from the environment or .env,"
    " else 8000]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    help="Seconds to wait for the workers.",
)
@json_option
@pass_context
def demo(ctx: Context, url: str | None, timeout: float, as_json: bool) -> None:
    """Send a realistic, signed event scenario and show what the workers made of it."""
    settings = ctx.settings
    try:
        secret = settings.require_webhook_secrets()[0]
    except SettingsError as e:
        raise click.UsageError(str(e)) from e
    base = (url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    s = scenario.build()
    log = (lambda *_: None) if as_json else click.echo
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=5).close()
    except (urllib.error.URLError, OSError) as e:
        raise click.ClickException(
            f"the receiver does not answer at {base} ({e}): start it with `make run`"
        ) from e
    log(
        f"demo {s.tag}: sending {len(s.deliveries)} deliveries ({len(s.events)} events)"
        f" to {base}/webhooks/stripe"
    )
    responses: list[dict[str, Any]] = []
    for index in s.deliveries:
        event = s.events[index]
        body = json.dumps(event).encode()
        try:
            status, answer = _post(
                f"{base}/webhooks/stripe", body, sign(body, secret, int(time.time()))
            )
        except (urllib.error.URLError, OSError) as e:
            raise click.ClickException(f"the receiver stopped answering at {base}: {e}") from e
        responses.append(
            {
                "id": event["id"],
                "type": event["type"],
                "status": status,
                "duplicate": answer.get("duplicate"),
            }
        )
        if status != 200:
            raise click.ClickException(
                f"{event['id']} ({event['type']}) got HTTP {status}: {answer}"
            )
    duplicates = sum(1 for r in responses if r["duplicate"])
    log(
        f"sent: {len(responses)} answered 200, {duplicates} of them duplicates;"
        " waiting for the workers"
    )

    with store.session(settings.database_url) as conn:
        _wait(conn, settings, s.ids, timeout)
        events = store.events_by_id(conn, s.ids)
        mirror = _mirror(conn, s)
        stats = store.stats(conn, 5)
        states = store.progress(conn, s.ids)
    dead = [e for e in events if e["status"] == "dead"]
    if as_json:
        emit_json(
            {
                "tag": s.tag,
                "customers": s.customers,
                "deliveries": responses,
                "duplicates": duplicates,
                "events": events,
                "mirror": mirror,
                "expected": s.expected,
                "stats": stats,
            }
        )
    else:
        click.echo("\nEVENTS (in processing order)")
        table(events, ["process_seq", "id", "type", "status", "attempts"])
        for name, rows in mirror.items():
            click.echo(f"\n{name.upper()}")
            if rows is None:
                click.echo("(no such table here)")
            else:
                table(rows, [c for c in MIRROR[name][1] if not rows or c in rows[0]])
        click.echo("\nSTATS")
        print_stats(stats)
    if dead:
        _name_failures([r for r in states if r["status"] == "dead"])
        raise click.ClickException(
            f"{len(dead)} demo event(s) are dead: see `stripe-ingest dead-letters list`"
        )


def _wait(conn: Connection, settings: Settings, ids: list[str], timeout: float) -> None:
    """Poll until every event is finished, telling on stderr how far the workers got; on a
    timeout, name what failed or died and say whether any worker consumes."""
    deadline = time.monotonic() + timeout
    shown: tuple[int, int] | None = None
    next_line = 0.0
    while True:
        states = store.progress(conn, ids)
        done = [r for r in states if r["status"] not in (None, "pending")]
        failing = [r for r in states if r["status"] == "pending" and r["last_error"]]
        if len(done) == len(ids):
            return
        now = time.monotonic()
        if now > deadline:
            break
        if (len(done), len(failing)) != shown or now >= next_line:
            shown, next_line = (len(done), len(failing)), now + 5
            line = f"waiting for the workers: {len(done)} of {len(ids)} events finished"
            if failing:
                line += f", {len(failing)} failing (retried with backoff)"
            click.echo(line, err=True)
        time.sleep(0.2)
    left = [r for r in states if r["status"] in (None, "pending")]
    _name_failures([r for r in states if r["status"] == "dead" or r["last_error"]])
    tried = sum(1 for r in states if r["attempts"] > 0 or r["status"] not in (None, "pending"))
    summary = f"{len(left)} of {len(ids)} event(s) not finished after {timeout:g}s"
    if not tried:
        raise click.ClickException(
            f"{summary}; no worker has tried any of them{_waiting_in_redis(settings)}:"
            " are the worker and sweeper running (`make run` starts them)?"
        )
    raise click.ClickException(
        f"{summary}; workers are consuming ({tried} of {len(ids)} events tried):"
        " see `stripe-ingest events show EVT_ID` for the failing ones above"
    )


def _name_failures(rows: list[store.Row]) -> None:
    for r in rows:
        what = "dead" if r["status"] == "dead" else "pending"
        click.echo(
            f"  {r['id']} ({r['type']}): {what} after {r['attempts']} attempt(s);"
            f" last error: {r['last_error']}",
            err=True,
        )


def _waiting_in_redis(settings: Settings) -> str:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        waiting = client.llen(queue_key(settings.redis_namespace))
    except redis.RedisError as e:
        return f" and Redis does not answer at the configured REDIS_URL ({type(e).__name__})"
    finally:
        client.close()
    return f" ({waiting} message(s) wait untaken in the Redis queue {QUEUE_NAME})"


def _mirror(conn: Connection, s: scenario.Scenario) -> dict[str, list[store.Row] | None]:
    customers = list(s.customers.values())
    result: dict[str, list[store.Row] | None] = {}
    for name, (keys, wanted) in MIRROR.items():
        columns = store.table_columns(conn, name)
        key = next((k for k in keys if k in columns), None)
        if not columns or key is None:
            result[name] = None
            continue
        values = s.charge_ids() if key.startswith("charge") else customers
        order = [key, *(["id"] if "id" in columns else [])]
        rows = store.mirror_rows(conn, name, key, values, order)
        shown = [c for c in wanted if c in columns]
        result[name] = [{c: r[c] for c in shown} for r in rows]
    return result
