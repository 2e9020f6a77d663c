"""`events`, `dead-letters` and `stats` through the real command, against real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.cli.clitools import corpus_events, finish, kill, run_cli, run_json, store_events

PAID = "stripe-ruby-mock__invoice.paid__1"
SUB = "stripe-ruby-mock__customer.subscription.updated__1"


@pytest.fixture
def offline_env() -> dict[str, str]:
    """No database behind it (nothing listens on port 1): usage errors come before any query."""
    return {
        "DATABASE_URL": "postgresql://root@127.0.0.1:1/stripe_ingest",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LOG_LEVEL": "warning",
    }


@pytest.fixture
def seeded(env: dict[str, str], database_url: str) -> dict[str, list[str]]:
    paid = corpus_events(PAID, 3, "paid")
    paid[2]["data"]["object"]["customer"] = "cus_other"
    subs = corpus_events(SUB, 2, "sub")
    ids = {"paid": store_events(database_url, paid), "subs": store_events(database_url, subs)}
    finish(database_url, ids["paid"][:1])
    kill(database_url, ids["subs"][:1], "KeyError: 'plan'")
    return ids


def test_events_list_filters_and_json(env: dict[str, str], seeded: dict[str, list[str]]) -> None:
    everything = run_json(env, "events", "list")["events"]
    assert {e["id"] for e in everything} == set(seeded["paid"] + seeded["subs"])
    assert [e["created"] for e in everything] == sorted(
        (e["created"] for e in everything), reverse=True
    )
    pending = run_json(env, "events", "list", "--status", "pending")["events"]
    assert {e["id"] for e in pending} == {seeded["paid"][1], seeded["paid"][2], seeded["subs"][1]}
    typed = run_json(env, "events", "list", "--type", "invoice.paid", "--limit", "2")["events"]
    assert len(typed) == 2 and {e["type"] for e in typed} == {"invoice.paid"}
    other = run_json(env, "events", "list", "--customer", "cus_other")["events"]
    assert [e["id"] for e in other] == [seeded["paid"][2]]
    assert (
        run_json(env, "events", "list", "--since", "2h")["events"] == []
    )  # corpus events are from 2023
    recent = run_json(env, "events", "list", "--since", "2023-11-14T22:13:21Z")["events"]
    assert {e["id"] for e in recent} == {seeded["paid"][1], seeded["paid"][2], seeded["subs"][1]}


def test_events_list_prints_a_table(env: dict[str, str], seeded: dict[str, list[str]]) -> None:
    result = run_cli(env, "events", "list", "--status", "dead")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split()[:4] == ["ID", "TYPE", "STATUS", "ATTEMPTS"]
    assert len(lines) == 2 and seeded["subs"][0] in lines[0] and "dead" in lines[0]
    assert lines[1] == "1 of 1 shown"


def test_events_show(env: dict[str, str], seeded: dict[str, list[str]]) -> None:
    dead_id = seeded["subs"][0]
    shown = run_json(env, "events", "show", dead_id)
    assert shown["event"]["status"] == "dead"
    assert [a["attempt"] for a in shown["attempts"]] == [1, 2, 3]
    assert shown["dead_letter"]["error"] == "KeyError: 'plan'"
    assert shown["payload"]["id"] == dead_id
    text = run_cli(env, "events", "show", dead_id)
    assert text.returncode == 0
    assert "ATTEMPTS" in text.stdout and "PAYLOAD" in text.stdout and dead_id in text.stdout


def test_dead_letters_list_and_show(env: dict[str, str], seeded: dict[str, list[str]]) -> None:
    dead_id = seeded["subs"][0]
    listed = run_json(env, "dead-letters", "list")["dead_letters"]
    assert [d["event_id"] for d in listed] == [dead_id]
    assert listed[0]["error"] == "KeyError: 'plan'" and listed[0]["attempts"] == 3
    assert run_json(env, "dead-letters", "list", "--type", "invoice.paid")["dead_letters"] == []
    shown = run_json(env, "dead-letters", "show", dead_id)
    assert shown["dead_letter"]["traceback"].startswith("Traceback")
    assert (
        len(shown["attempts"]) == 3 and shown["payload"]["type"] == "customer.subscription.updated"
    )
    text = run_cli(env, "dead-letters", "show", dead_id)
    assert "TRACEBACK" in text.stdout and f"stripe-ingest replay {dead_id}" in text.stdout
    not_dead = run_cli(env, "dead-letters", "show", seeded["paid"][0])
    assert not_dead.returncode == 1 and "is not dead (status processed)" in not_dead.stderr


def test_stats(env: dict[str, str], seeded: dict[str, list[str]]) -> None:
    stats = run_json(env, "stats")
    assert stats["counts"] == {"pending": 3, "processed": 1, "ignored": 0, "dead": 1}
    assert stats["backlog"] == 3 and stats["dead"] == 1 and stats["total"] == 5
    assert stats["oldest_pending_age_seconds"] >= 0
    assert stats["throughput"]["finished"] == 1
    text = run_cli(env, "stats")
    assert text.returncode == 0 and "backlog" in text.stdout and "oldest pending" in text.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("events", "show", "evt_missing"),
        ("dead-letters", "show", "evt_missing"),
        ("replay", "evt_missing"),
    ],
)
def test_an_unknown_event_id_exits_1_naming_it(env: dict[str, str], args: tuple[str, ...]) -> None:
    result = run_cli(env, *args)
    assert result.returncode == 1
    assert "evt_missing" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("events", "list", "--since", "yesterday-ish"),
        ("events", "list", "--status", "exploded"),
        ("events", "list", "--limit", "0"),
        ("dead-letters", "list", "--since", "5 parsecs"),
        ("purge", "--older-than", "2024-01-01"),
        ("purge",),
        ("replay",),
        ("replay", "--dead", "evt_1"),
        ("replay", "--type", "invoice.paid", "evt_1"),
        ("backfill",),
        ("events", "frobnicate"),
    ],
)
def test_bad_usage_exits_2_with_the_usage_line(
    offline_env: dict[str, str], args: tuple[str, ...]
) -> None:
    result = run_cli(offline_env, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Usage: stripe-ingest") and result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("events", "list"),
        ("events", "show", "evt_1"),
        ("dead-letters", "list"),
        ("dead-letters", "show", "evt_1"),
        ("stats",),
        ("replay", "evt_1"),
        ("replay", "--dead", "--yes"),
        ("purge", "--older-than", "30d"),
        ("backfill", "--since", "1d"),
        ("migrate",),
    ],
)
def test_a_database_that_does_not_answer_exits_1_with_one_line(
    offline_env: dict[str, str], args: tuple[str, ...]
) -> None:
    down = {
        **offline_env,
        "STRIPE_API_KEY": "sk_test_unused",
        "STRIPE_API_BASE": "http://127.0.0.1:1",
    }
    result = run_cli(down, *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: database unavailable"), result.stderr
    assert "Traceback" not in result.stderr
