"""Connect accounts in the CLI: `backfill --account` reads a connected account's events (the
`Stripe-Account` header, against a local fake of Stripe's Events API) and stores them as that
account's; `events list` and `dead-letters list` filter by `--account`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.clitools import kill, rows, run_cli, run_json, store_events
from tests.cli.fake_stripe import FakeStripe, serve
from tests.cli.test_backfill import stripe_events

ACCOUNT = "acct_1Connected"


def connected_events(count: int) -> list[dict[str, Any]]:
    """What Stripe lists for a connected account: its events, some naming the account."""
    events = stripe_events(count, "acct")
    for i, event in enumerate(events):
        event.pop("account", None)
        if i % 2:
            event["account"] = ACCOUNT
    return events


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    platform = stripe_events(5, "platform")
    for event in platform:
        event.pop("account", None)  # some corpus events were a Connect endpoint's
    fake = FakeStripe(events=platform, connected={ACCOUNT: connected_events(7)})
    with serve(fake) as running:
        yield running


def _env(env: dict[str, str], fake: FakeStripe) -> dict[str, str]:
    return {**env, "STRIPE_API_KEY": fake.api_key, "STRIPE_API_BASE": fake.url}


def test_backfill_of_an_account_reads_its_events_and_stores_them_as_its(
    env: dict[str, str], database_url: str, fake: FakeStripe
) -> None:
    result = run_json(_env(env, fake), "backfill", "--since", "1d", "--account", ACCOUNT)

    assert (result["fetched"], result["new"], result["account"]) == (7, 7, ACCOUNT)
    assert fake.accounts and set(fake.accounts) == {ACCOUNT}  # every query sent Stripe-Account
    stored = rows(database_url, "SELECT id, account, endpoint FROM stripe_events ORDER BY id")
    assert {r["id"] for r in stored} == {e["id"] for e in fake.connected[ACCOUNT]}
    assert {(r["account"], r["endpoint"]) for r in stored} == {(ACCOUNT, None)}
    (run,) = rows(database_url, "SELECT account, phase FROM backfill_runs")
    assert run == {"account": ACCOUNT, "phase": "done"}


def test_the_platforms_backfill_sends_no_account_and_resumes_apart(
    env: dict[str, str], database_url: str, fake: FakeStripe
) -> None:
    platform = run_json(_env(env, fake), "backfill", "--since", "1d")
    assert (platform["fetched"], platform["account"]) == (5, None)
    assert fake.accounts and set(fake.accounts) == {None}
    stored = rows(database_url, "SELECT DISTINCT account FROM stripe_events")
    assert stored == [{"account": None}]

    # An interrupted account run is resumed only by a run for the same account.
    fake.fail_on_request = len(fake.queries) + 2
    failed = run_cli(_env(env, fake), "backfill", "--since", "1d", "--account", ACCOUNT)
    assert failed.returncode == 1
    (interrupted,) = rows(
        database_url, "SELECT id FROM backfill_runs WHERE account = %s", (ACCOUNT,)
    )
    fake.fail_on_request = None
    again = run_json(_env(env, fake), "backfill", "--since", "1d")
    assert again["run_id"] not in (platform["run_id"], interrupted["id"]) and again["new"] == 0
    resumed = run_json(_env(env, fake), "backfill", "--since", "1d", "--account", ACCOUNT)
    assert (resumed["run_id"], resumed["new"]) == (interrupted["id"], 7)


def test_backfill_refuses_an_account_that_is_not_one(env: dict[str, str], fake: FakeStripe) -> None:
    result = run_cli(_env(env, fake), "backfill", "--since", "1d", "--account", "cus_123")
    assert result.returncode == 2
    assert "acct_" in result.stderr
    assert fake.queries == []


def test_events_and_dead_letters_filter_by_account(env: dict[str, str], database_url: str) -> None:
    events = stripe_events(4, "filter")
    for event, account in zip(events, (ACCOUNT, ACCOUNT, "acct_2Other", None), strict=True):
        event.pop("account", None)
        if account:
            event["account"] = account
    store_events(database_url, events)

    listed = run_json(env, "events", "list", "--account", ACCOUNT)["events"]
    assert {r["id"] for r in listed} == {e["id"] for e in events[:2]}
    assert {(r["account"], r["kind"], r["endpoint"]) for r in listed} == {
        (ACCOUNT, "snapshot", None)
    }
    assert run_json(env, "events", "list")["total"] == 4
    assert run_json(env, "events", "list", "--account", "acct_3None")["events"] == []

    kill(database_url, [e["id"] for e in events])
    dead = run_json(env, "dead-letters", "list", "--account", "acct_2Other")
    assert [r["event_id"] for r in dead["dead_letters"]] == [events[2]["id"]]
    assert dead["total"] == 1
    assert run_json(env, "dead-letters", "list")["total"] == 4
