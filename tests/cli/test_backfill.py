"""`backfill` against a local fake of Stripe's Events API (a real HTTP server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.clitools import enqueued_ids, rows, run_cli, run_json
from tests.cli.fake_stripe import FakeStripe, serve
from tests.procs import run_worker, wait_until
from tests.support import corpus_files, load_event


def stripe_events(count: int, tag: str) -> list[dict[str, Any]]:
    """Corpus events with unique ids, one a minute up to now (newest last)."""
    files = [f for f in corpus_files() if "fixtures3" not in f.name]
    now = int(time.time())
    events = []
    for i in range(count):
        event = load_event(files[i % len(files)].name)
        event["id"] = f"evt_bf{tag}{i:05d}"
        event["created"] = now - (count - i) * 60
        events.append(event)
    return events


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with serve(FakeStripe(events=stripe_events(230, "a"))) as fake:
        yield fake


def _env(env: dict[str, str], fake: FakeStripe) -> dict[str, str]:
    return {**env, "STRIPE_API_KEY": fake.api_key, "STRIPE_API_BASE": fake.url}


def _stored(url: str) -> list[dict[str, Any]]:
    return rows(
        url, "SELECT id, created, received_at, status FROM stripe_events ORDER BY received_at, id"
    )


def test_backfill_stores_every_new_event_oldest_first_and_a_second_run_nothing(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str, fake: FakeStripe
) -> None:
    benv = _env(env, fake)
    # One segment: the plain listing Stripe documents, page after page.
    result = run_json(benv, "backfill", "--since", "1d", "--chunk-size", "64", "--parallel", "1")
    assert (result["fetched"], result["new"], result["duplicates"]) == (230, 230, 0)
    assert result["enqueued"] == 230
    stored = _stored(database_url)
    assert {r["id"] for r in stored} == {e["id"] for e in fake.events}
    # Stored in creation order, though Stripe lists newest first.
    assert [r["created"] for r in stored] == sorted(r["created"] for r in stored)
    assert enqueued_ids(redis_url, redis_namespace) == sorted(e["id"] for e in fake.events)
    # Three pages, following Stripe's cursor.
    assert len(fake.queries) == 3
    first = dict(fake.queries[0])
    assert first["limit"] == "100" and "starting_after" not in first
    assert abs(int(first["created[gte]"]) - (time.time() - 86400)) < 60
    assert dict(fake.queries[1])["starting_after"] == sorted(e["id"] for e in fake.events)[-100]

    again = run_cli(benv, "backfill", "--since", "1d")
    assert again.returncode == 0, again.stderr
    assert "fetched 230, new 0, duplicates 230, enqueued 0" in again.stdout
    assert len(_stored(database_url)) == 230


def test_undelivered_only_and_types_are_sent_to_stripe(
    env: dict[str, str], database_url: str, fake: FakeStripe
) -> None:
    fake.undelivered = {e["id"] for e in fake.events[::10]}
    result = run_json(_env(env, fake), "backfill", "--since", "1d", "--undelivered-only")
    assert dict(fake.queries[-1])["delivery_success"] == "false"
    assert result["new"] == len(fake.undelivered)
    assert {r["id"] for r in _stored(database_url)} == fake.undelivered

    fake.queries.clear()
    typed = run_json(
        _env(env, fake),
        "backfill",
        "--since",
        "1d",
        "--types",
        "invoice.paid,charge.refunded",
        "--types",
        "customer.created",
    )
    sent = [v for k, v in fake.queries[0] if k.startswith("types[")]
    assert sorted(sent) == ["charge.refunded", "customer.created", "invoice.paid"]
    assert "delivery_success" not in dict(fake.queries[0])
    wanted = {"invoice.paid", "charge.refunded", "customer.created"}
    expected = {e["id"] for e in fake.events if e["type"] in wanted}
    assert typed["fetched"] == len(expected) and expected


def test_an_interrupted_backfill_resumes_where_it_stopped(
    env: dict[str, str], database_url: str, fake: FakeStripe
) -> None:
    fake.fail_on_request = 2
    failed = run_cli(_env(env, fake), "backfill", "--since", "1d", "--parallel", "1")
    assert failed.returncode == 1
    assert "injected outage" in failed.stderr and "run backfill again to resume" in failed.stderr
    assert _stored(database_url) == []
    (run,) = rows(database_url, "SELECT * FROM backfill_runs")
    assert run["phase"] == "fetching" and run["fetched"] == 100
    (segment,) = rows(database_url, "SELECT * FROM backfill_segments")
    assert segment["fetched"] == 100 and not segment["done"]

    resumed = run_json(_env(env, fake), "backfill", "--since", "1d")
    assert resumed["run_id"] == run["id"] and resumed["new"] == 230
    assert dict(fake.queries[2])["starting_after"] == segment["cursor"]
    assert len(fake.queries) == 4  # one page fetched, one refused, the last two
    assert rows(database_url, "SELECT phase FROM backfill_runs") == [{"phase": "done"}]
    assert rows(database_url, "SELECT count(*) AS n FROM backfill_events") == [{"n": 0}]


def test_backfill_needs_an_api_key_and_warns_past_thirty_days(
    env: dict[str, str], fake: FakeStripe
) -> None:
    missing = run_cli({**env, "STRIPE_API_BASE": fake.url}, "backfill", "--since", "1d")
    assert missing.returncode == 2 and "STRIPE_API_KEY is not set" in missing.stderr
    old = run_cli(_env(env, fake), "backfill", "--since", "45d")
    assert old.returncode == 0, old.stderr
    assert "only keeps the last 30 days" in old.stderr
    wrong = run_cli(
        {**_env(env, fake), "STRIPE_API_KEY": "sk_test_wrong"}, "backfill", "--since", "1d"
    )
    assert wrong.returncode == 1 and "Invalid API Key" in wrong.stderr


@pytest.mark.slow
def test_backfilled_events_are_processed_by_the_workers(
    env: dict[str, str], database_url: str, fake: FakeStripe
) -> None:
    with run_worker(env, processes=1, threads=4):
        result = run_json(_env(env, fake), "backfill", "--since", "1d")
        assert result["new"] == 230
        wait_until(lambda: run_json(env, "stats")["backlog"] == 0, timeout=90, interval=0.5)
    counts = run_json(env, "stats")["counts"]
    assert counts["dead"] == 0 and counts["processed"] + counts["ignored"] == 230
    assert counts["processed"] > 0


def test_an_interrupted_run_with_another_since_is_refused_unless_told(
    env: dict[str, str], database_url: str, fake: FakeStripe
) -> None:
    fake.fail_on_request = 2
    assert run_cli(_env(env, fake), "backfill", "--since", "1d").returncode == 1
    (run,) = rows(database_url, "SELECT id, since FROM backfill_runs")

    # The same relative --since a moment later still resumes it; a wider window does not.
    refused = run_cli(_env(env, fake), "backfill", "--since", "2d")
    assert refused.returncode == 2, refused.stderr
    assert f"backfill run #{run['id']} was interrupted with --since" in refused.stderr
    assert "--resume" in refused.stderr and "--fresh" in refused.stderr
    assert "Traceback" not in refused.stderr and _stored(database_url) == []
    assert (
        run_cli(_env(env, fake), "backfill", "--since", "2d", "--fresh", "--resume").returncode == 2
    )

    resumed = run_json(_env(env, fake), "backfill", "--since", "2d", "--resume")
    assert resumed["run_id"] == run["id"] and resumed["new"] == 230
    assert resumed["since"] == run["since"].isoformat()  # its own window, as it said

    fake.fail_on_request = len(fake.queries) + 2
    assert run_cli(_env(env, fake), "backfill", "--since", "1d").returncode == 1
    fresh = run_json(_env(env, fake), "backfill", "--since", "150.5m", "--fresh")
    assert fresh["run_id"] != run["id"] and fresh["fetched"] == 150
    phases = rows(database_url, "SELECT phase FROM backfill_runs ORDER BY id")
    assert [p["phase"] for p in phases] == ["done", "abandoned", "done"]
