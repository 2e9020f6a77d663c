"""`backfill --parallel`: segments read at once against a fake Stripe with latency and Stripe's
test-mode rate limit (a real HTTP server), every event stored once, and a SIGKILLed run resumed
without reading its finished segments again."""

from __future__ import annotations

import itertools
import json
import signal
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.cli.clitools import enqueued_ids, rows, run_json
from tests.cli.event_history import event_history
from tests.cli.fake_stripe import FakeStripe, serve
from tests.procs import run_process, wait_until

TEST_MODE_LIMIT = 25  # Stripe's read limit in test mode (the fake's key is sk_test_)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    events = event_history(2000, 7, "p")
    with serve(FakeStripe(events=events, latency=(0.05, 0.1), rate_limit=TEST_MODE_LIMIT)) as f:
        yield f


def _env(env: dict[str, str], fake: FakeStripe) -> dict[str, str]:
    return {**env, "STRIPE_API_KEY": fake.api_key, "STRIPE_API_BASE": fake.url}


def _window(query: list[tuple[str, str]]) -> tuple[int, int | None]:
    params = dict(query)
    lt = params.get("created[lt]")
    return int(params["created[gte]"]), int(lt) if lt is not None else None


def _segments(url: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT * FROM backfill_segments ORDER BY segment")


def _assert_stored_once(url: str, redis_url: str, namespace: str, fake: FakeStripe) -> None:
    stored = rows(url, "SELECT id, created FROM stripe_events ORDER BY received_at, id")
    assert sorted(r["id"] for r in stored) == sorted(e["id"] for e in fake.events)
    assert [r["created"] for r in stored] == sorted(r["created"] for r in stored)  # oldest first
    assert enqueued_ids(redis_url, namespace) == sorted(e["id"] for e in fake.events)
    assert rows(url, "SELECT count(*) AS n FROM backfill_events") == [{"n": 0}]


def test_segments_are_read_at_once_under_the_limit_and_each_event_stored_once(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str, fake: FakeStripe
) -> None:
    result = run_json(_env(env, fake), "backfill", "--since", "7d", "--parallel", "4")

    assert (result["fetched"], result["new"], result["duplicates"]) == (2000, 2000, 0)
    assert result["enqueued"] == 2000
    _assert_stored_once(database_url, redis_url, redis_namespace, fake)
    assert 1 < fake.max_in_flight <= 4  # in parallel, never more than asked
    # The client kept itself under the limit: the fake never had to refuse a request.
    assert fake.rate_limited == 0 and result["this_invocation"]["rate_limited"] == 0
    assert fake.busiest_second <= TEST_MODE_LIMIT
    # The segments tile the window, newest first, the newest without an upper bound.
    segments = _segments(database_url)
    assert len(segments) == 16 and all(s["done"] for s in segments)
    assert segments[0]["lt"] is None
    assert all(a["gte"] == b["lt"] for a, b in itertools.pairwise(segments))
    assert sum(s["fetched"] for s in segments) == 2000
    assert {_window(q) for q in fake.queries} == {(s["gte"], s["lt"]) for s in segments}
    assert len(fake.queries) == result["this_invocation"]["requests"]


def test_429s_are_retried_after_their_retry_after_and_nothing_is_lost(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str, fake: FakeStripe
) -> None:
    fake.rate_limit = 5  # below what the client is told it may send
    result = run_json(
        _env(env, fake), "backfill", "--since", "7d", "--parallel", "4", "--rate", "20"
    )

    assert fake.rate_limited > 0
    assert result["this_invocation"]["rate_limited"] == fake.rate_limited
    assert (result["fetched"], result["new"], result["duplicates"]) == (2000, 2000, 0)
    _assert_stored_once(database_url, redis_url, redis_namespace, fake)


def test_a_killed_run_resumes_its_unfinished_segments_and_skips_the_finished(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    # Realistic latency: the run is still reading when some of its segments are done.
    with serve(
        FakeStripe(
            events=event_history(3000, 7, "k"), latency=(0.15, 0.3), rate_limit=TEST_MODE_LIMIT
        )
    ) as fake:
        benv = _env(env, fake)
        args = [sys.executable, "-m", "stripe_ingest.cli.main", "backfill", "--since", "7d"]
        with run_process("backfill", [*args, "--parallel", "2"], benv) as proc:

            def some_done() -> bool:
                assert proc.alive(), proc.logs()
                return any(s["done"] for s in _segments(database_url))

            wait_until(some_done, timeout=60)
            proc.send(signal.SIGKILL)
            assert proc.proc.wait(timeout=10) == -signal.SIGKILL

        before = _segments(database_url)
        finished = {(s["gte"], s["lt"]) for s in before if s["done"]}
        unfinished = {(s["gte"], s["lt"]): s["cursor"] for s in before if not s["done"]}
        assert finished and unfinished
        (run,) = rows(database_url, "SELECT id, phase FROM backfill_runs")
        assert run["phase"] == "fetching"
        assert rows(database_url, "SELECT count(*) AS n FROM stripe_events") == [{"n": 0}]
        asked = len(fake.queries)

        resumed = run_json(benv, "backfill", "--since", "7d", "--parallel", "2")

        again = fake.queries[asked:]
        assert not {_window(q) for q in again} & finished  # finished segments are not re-read
        for window, cursor in unfinished.items():
            first = next(dict(q) for q in again if _window(q) == window)
            assert first.get("starting_after") == cursor  # each from its last committed page
        assert resumed["run_id"] == run["id"]
        assert (resumed["fetched"], resumed["new"], resumed["duplicates"]) == (3000, 3000, 0)
        _assert_stored_once(database_url, redis_url, redis_namespace, fake)


def test_ctrl_c_stops_after_the_pages_being_read_and_the_run_resumes(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    events = event_history(3000, 7, "i")
    with serve(FakeStripe(events=events, latency=(0.15, 0.3), rate_limit=TEST_MODE_LIMIT)) as fake:
        benv = _env(env, fake)
        args = [sys.executable, "-m", "stripe_ingest.cli.main", "backfill", "--since", "7d"]
        with run_process("backfill", args, benv) as proc:

            def reading() -> bool:
                assert proc.alive(), proc.logs()
                return any(r["fetched"] for r in rows(database_url, "SELECT * FROM backfill_runs"))

            wait_until(reading, timeout=60)
            proc.send(signal.SIGINT)
            assert proc.proc.wait(timeout=30) == 1
            assert "interrupted;" in proc.logs() and "run backfill again to resume" in proc.logs()
            assert "Traceback" not in proc.logs()

        # What was fetched is staged, and each segment's count says how much.
        segments = _segments(database_url)
        staged = rows(
            database_url, "SELECT segment, count(*) AS n FROM backfill_events GROUP BY segment"
        )
        assert {r["segment"]: r["n"] for r in staged} == {
            s["segment"]: s["fetched"] for s in segments if s["fetched"]
        }
        assert not all(s["done"] for s in segments)

        resumed = run_json(benv, "backfill", "--since", "7d")
        assert (resumed["fetched"], resumed["new"], resumed["duplicates"]) == (3000, 3000, 0)
        _assert_stored_once(database_url, redis_url, redis_namespace, fake)


def test_a_run_interrupted_before_segments_resumes_from_its_own_cursor(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    events = event_history(230, 1, "o")
    newest = sorted(events, key=lambda e: (e["created"], e["id"]), reverse=True)
    with serve(FakeStripe(events=events)) as fake:
        # As an older backfill left it: 100 fetched, staged in fetch order, its cursor past them.
        with psycopg.connect(database_url) as conn:
            run_id = conn.execute(
                "INSERT INTO backfill_runs (requested_by, since, fetched, cursor)"
                " VALUES ('test', now() - interval '1 day', 100, %s) RETURNING id",
                (newest[99]["id"],),
            ).fetchone()[0]  # type: ignore[index]
            for position, event in enumerate(newest[:100]):
                conn.execute(
                    "INSERT INTO backfill_events (run_id, position, payload) VALUES (%s, %s, %s)",
                    (run_id, position, json.dumps(event)),
                )

        resumed = run_json(_env(env, fake), "backfill", "--since", "1d")

        assert resumed["run_id"] == run_id
        assert (resumed["fetched"], resumed["new"], resumed["duplicates"]) == (230, 230, 0)
        assert len(fake.queries) == 2 and "created[lt]" not in dict(fake.queries[0])
        assert dict(fake.queries[0])["starting_after"] == newest[99]["id"]
        _assert_stored_once(database_url, redis_url, redis_namespace, fake)
