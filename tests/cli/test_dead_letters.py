"""`dead-letters summary` and `resolve`: the loop closes, and what counts dead letters agrees."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from stripe_ingest.cli import store
from tests.cli.clitools import corpus_events, finish, kill, rows, run_cli, run_json, store_events
from worker.gauges import DatabaseGauges

PAID = "stripe-ruby-mock__invoice.paid__1"
SUB = "stripe-ruby-mock__customer.subscription.updated__1"


@pytest.fixture
def dead(database_url: str) -> dict[str, list[str]]:
    """Three groups: 4 invoice.paid x KeyError, 2 invoice.paid x Timeout, 1 subscription."""
    paid = store_events(database_url, corpus_events(PAID, 6, "p"))
    subs = store_events(database_url, corpus_events(SUB, 2, "s"))
    kill(database_url, paid[:4], "KeyError: 'lines'")
    kill(database_url, paid[4:], "TimeoutError: upstream")
    kill(database_url, subs[:1], "KeyError: 'plan'")
    finish(database_url, subs[1:])
    return {"key": paid[:4], "timeout": paid[4:], "sub": subs[:1], "processed": subs[1:]}


def _gauge(database_url: str) -> float:
    (family,) = [
        m for m in DatabaseGauges(database_url).collect() if m.name == "stripe_events_dead"
    ]
    value: float = family.samples[0].value
    return value


def test_summary_groups_open_dead_letters_by_type_and_error(
    env: dict[str, str], dead: dict[str, list[str]]
) -> None:
    summary = run_json(env, "dead-letters", "summary")
    assert summary["total"] == 3 and summary["dead"] == 7
    groups = [(g["type"], g["error"], g["count"]) for g in summary["groups"]]
    assert groups == [
        ("invoice.paid", "KeyError: 'lines'", 4),
        ("invoice.paid", "TimeoutError: upstream", 2),
        ("customer.subscription.updated", "KeyError: 'plan'", 1),
    ]
    first = summary["groups"][0]
    assert first["oldest"] <= first["newest"] and first["example"] in dead["key"]

    capped = run_cli(env, "dead-letters", "summary", "--limit", "2")
    assert capped.returncode == 0, capped.stderr
    assert "2 of 3 shown" in capped.stdout and "7 dead letter(s) in 3 group(s)" in capped.stdout
    assert "TimeoutError: upstream" in capped.stdout and "KeyError: 'plan'" not in capped.stdout


def test_resolve_closes_dead_letters_for_stats_gauge_listings_and_replay(
    env: dict[str, str], database_url: str, dead: dict[str, list[str]]
) -> None:
    assert run_json(env, "stats")["dead"] == 7 and _gauge(database_url) == 7
    result = run_cli(
        env, "dead-letters", "resolve", *dead["timeout"], "--reason", "  upstream\nwas down "
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "resolved 2 dead letter(s)"

    stats = run_json(env, "stats")
    assert stats["dead"] == 5 and stats["dead_resolved"] == 2
    assert stats["counts"]["dead"] == 7  # the events themselves stay dead
    assert _gauge(database_url) == 5
    listed = run_json(env, "dead-letters", "list")
    assert listed["total"] == 5 and not set(dead["timeout"]) & {
        d["event_id"] for d in listed["dead_letters"]
    }
    assert [g["error"] for g in run_json(env, "dead-letters", "summary")["groups"]] == [
        "KeyError: 'lines'",
        "KeyError: 'plan'",
    ]
    resolved = run_json(env, "dead-letters", "list", "--resolved")["dead_letters"]
    assert {r["event_id"] for r in resolved} == set(dead["timeout"])
    assert {(r["resolution"], r["resolved_by"] != "") for r in resolved} == {
        ("upstream was down", True)
    }
    letters = rows(
        database_url,
        "SELECT e.status, d.resolved_at IS NOT NULL AS closed, d.resolution FROM dead_letters d"
        " JOIN stripe_events e ON e.id = d.event_id WHERE d.event_id = ANY(%s)",
        (dead["timeout"],),
    )
    assert letters == [{"status": "dead", "closed": True, "resolution": "upstream was down"}] * 2
    audit = rows(database_url, "SELECT event_id, via, resolution FROM dead_letter_resolutions")
    assert sorted(a["event_id"] for a in audit) == sorted(dead["timeout"])
    assert {(a["via"], a["resolution"]) for a in audit} == {("cli", "upstream was down")}
    shown = run_json(env, "dead-letters", "show", dead["timeout"][0])["dead_letter"]
    assert shown["resolution"] == "upstream was down"

    # `replay --dead` takes open dead letters only; a resolved one can still be replayed by id.
    plan = run_json(env, "replay", "--dead", "--dry-run")
    assert plan["matched"] == 5 and not set(dead["timeout"]) & set(plan["ids"])
    again = run_json(env, "dead-letters", "resolve", dead["timeout"][0], "--reason", "twice")
    assert again["resolved"] == [] and list(again["already_resolved"]) == [dead["timeout"][0]]
    replayed = run_cli(env, "replay", dead["timeout"][0])
    assert replayed.returncode == 0, replayed.stderr
    assert run_json(env, "stats")["dead_resolved"] == 1


@pytest.mark.parametrize("which", ["processed", "pending", "unknown"])
def test_resolve_refuses_what_is_not_dead_and_changes_nothing(
    env: dict[str, str], database_url: str, dead: dict[str, list[str]], which: str
) -> None:
    pending = store_events(database_url, corpus_events(PAID, 1, "x"))
    other = {"processed": dead["processed"][0], "pending": pending[0], "unknown": "evt_nope"}[which]
    result = run_cli(env, "dead-letters", "resolve", dead["key"][0], other, "--reason", "noise")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and other in lines[0] and "Traceback" not in result.stderr
    assert ("unknown" if which == "unknown" else f"{other} ({which})") in lines[0]
    assert rows(
        database_url, "SELECT count(*) AS n FROM dead_letters WHERE resolved_at IS NOT NULL"
    ) == [{"n": 0}]


@pytest.mark.parametrize("args", [("evt_1",), ("evt_1", "--reason", "   "), ("--reason", "x")])
def test_resolve_needs_ids_and_a_reason(env: dict[str, str], args: tuple[str, ...]) -> None:
    result = run_cli(env, "dead-letters", "resolve", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_capped_lists_say_how_many_they_show(
    env: dict[str, str], dead: dict[str, list[str]]
) -> None:
    text = run_cli(env, "dead-letters", "list", "--limit", "3")
    assert text.stdout.splitlines()[-1] == "3 of 7 shown (--limit N shows more)"
    as_json: dict[str, Any] = run_json(env, "dead-letters", "list", "--limit", "3")
    assert (as_json["shown"], as_json["total"], len(as_json["dead_letters"])) == (3, 7, 3)
    events = run_json(env, "events", "list", "--limit", "2", "--type", "invoice.paid")
    assert (events["shown"], events["total"]) == (2, 6)
    assert (
        run_cli(env, "events", "list", "--limit", "2")
        .stdout.splitlines()[-1]
        .startswith("2 of 8 shown")
    )


def test_the_first_letters_of_each_group_come_in_one_query_as_each_groups_listing(
    database_url: str,
) -> None:
    # Groups of 14, 3 and 1 open letters (a page shows the first 10 of each), one resolved.
    paid = store_events(database_url, corpus_events(PAID, 18, "g"))
    subs = store_events(database_url, corpus_events(SUB, 2, "h"))
    kill(database_url, list(reversed(paid[:14])), "KeyError: 'lines'")
    kill(database_url, paid[14:17], "RuntimeError: boom")
    kill(database_url, subs, "KeyError: 'plan'")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE dead_letters SET resolved_at = now(), resolved_by = 'ops', resolution = 'x'"
            " WHERE event_id = %s",
            (subs[1],),
        )
    with store.session(database_url) as conn:
        groups = [(g["type"], g["error"]) for g in store.summary(conn, store.Filter(limit=50))]
        firsts = store.first_of_groups(conn, [*groups, ("invoice.paid", "none such")], 10)
        expected = {
            (t, e): store.list_dead(conn, store.Filter(type=t, error=e, limit=10))
            for t, e in groups
        }
    assert len(groups) == 3
    assert {g: firsts[g] for g in groups} == expected
    assert [r["event_id"] for r in firsts[("invoice.paid", "KeyError: 'lines'")]] == paid[:10]
    plan = ("customer.subscription.updated", "KeyError: 'plan'")
    assert [r["event_id"] for r in firsts[plan]] == subs[:1]
    assert firsts[("invoice.paid", "none such")] == []
