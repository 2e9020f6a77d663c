"""`replay`: the state it resets, the dead letters it removes, what it enqueues, what it refuses,
and its audit trail. (End to end with real workers: test_replay_workers.py.)"""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from tests.cli.clitools import (
    ROOT,
    cli_env,
    corpus_events,
    enqueued_ids,
    finish,
    kill,
    rows,
    run_cli,
    run_json,
    store_events,
)

SUB = "stripe-ruby-mock__customer.subscription.updated__1"
PAID = "stripe-ruby-mock__invoice.paid__1"


def _state(url: str, ids: list[str]) -> dict[str, dict[str, object]]:
    found = rows(
        url,
        "SELECT id, status, attempts, last_error, next_attempt_at, processed_at, enqueued_at,"
        " (SELECT count(*) FROM dead_letters d WHERE d.event_id = e.id) AS dead_letters"
        " FROM stripe_events e WHERE id = ANY(%s)",
        (ids,),
    )
    return {r["id"]: r for r in found}


def test_replay_by_id_resets_removes_the_dead_letter_enqueues_and_audits(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    ids = store_events(database_url, corpus_events(SUB, 2))
    kill(database_url, ids)
    result = run_json(env, "replay", ids[0])
    assert result["replayed"] == 1 and result["ids"] == [ids[0]]
    state = _state(database_url, ids)
    assert state[ids[0]]["status"] == "pending" and state[ids[0]]["attempts"] == 0
    assert state[ids[0]]["last_error"] is None and state[ids[0]]["dead_letters"] == 0
    assert state[ids[0]]["next_attempt_at"] is None and state[ids[0]]["enqueued_at"] is not None
    assert state[ids[1]]["status"] == "dead" and state[ids[1]]["dead_letters"] == 1
    assert enqueued_ids(redis_url, redis_namespace) == [ids[0]]
    # The attempt log keeps the history of the failed attempts across the replay.
    assert (
        len(rows(database_url, "SELECT 1 FROM event_attempts WHERE event_id = %s", (ids[0],))) == 3
    )
    (audit,) = rows(database_url, "SELECT * FROM replay_audit")
    assert audit["mode"] == "ids" and audit["replayed"] == 1 and audit["event_ids"] == [ids[0]]
    assert audit["requested_by"] and audit["finished_at"] is not None
    # The event's history names the replay.
    (replay,) = run_json(env, "events", "show", ids[0])["replays"]
    assert (replay["id"], replay["via"], replay["mode"]) == (audit["id"], "cli", "ids")
    assert run_json(env, "events", "show", ids[1])["replays"] == []
    assert "REPLAYS" in run_cli(env, "events", "show", ids[0]).stdout


def test_replay_refuses_finished_events_without_force(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    ids = store_events(database_url, corpus_events(PAID, 3))
    finish(database_url, ids[:1], "processed")
    finish(database_url, ids[1:2], "ignored")
    kill(database_url, ids[2:])
    refused = run_cli(env, "replay", *ids)
    assert refused.returncode == 1
    assert f"{ids[0]} (processed)" in refused.stderr and f"{ids[1]} (ignored)" in refused.stderr
    assert "--force" in refused.stderr
    # All or nothing: the dead one was not replayed either.
    assert _state(database_url, ids)[ids[2]]["status"] == "dead"
    assert enqueued_ids(redis_url, redis_namespace) == []

    forced = run_json(env, "replay", "--force", *ids)
    assert sorted(forced["ids"]) == sorted(ids)
    state = _state(database_url, ids)
    assert {s["status"] for s in state.values()} == {"pending"}
    assert all(s["processed_at"] is None for s in state.values())
    assert enqueued_ids(redis_url, redis_namespace) == sorted(ids)
    assert rows(database_url, "SELECT forced FROM replay_audit") == [{"forced": True}]


def test_replaying_a_pending_event_only_enqueues_it_again(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    (event_id,) = store_events(database_url, corpus_events(PAID, 1))
    result = run_cli(env, "replay", event_id, event_id)
    assert result.returncode == 0, result.stderr
    assert "replayed 1 event(s), enqueued 1" in result.stdout
    assert _state(database_url, [event_id])[event_id]["status"] == "pending"
    assert enqueued_ids(redis_url, redis_namespace) == [event_id]


def test_bulk_replay_by_filter_with_dry_run_limit_and_audit(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    subs = store_events(database_url, corpus_events(SUB, 4, "s"))
    paid = store_events(database_url, corpus_events(PAID, 3, "p"))
    kill(database_url, subs + paid)

    plan = run_json(env, "replay", "--dead", "--type", "invoice.paid", "--dry-run")
    assert plan["dry_run"] is True and sorted(plan["ids"]) == sorted(paid)
    text = run_cli(env, "replay", "--dead", "--type", "invoice.paid", "--dry-run")
    assert "would replay 3 event(s)" in text.stdout
    assert {s["status"] for s in _state(database_url, paid).values()} == {"dead"}

    limited = run_json(env, "replay", "--dead", "--type", SUB.split("__")[1], "--limit", "3")
    assert limited["replayed"] == 3 and set(limited["ids"]) < set(subs)
    assert enqueued_ids(redis_url, redis_namespace) == sorted(limited["ids"])
    result = run_cli(env, "replay", "--dead", "--since", "1h", "--yes")
    assert result.returncode == 0, result.stderr
    assert "replayed 4 event(s)" in result.stdout and "replaying" in result.stderr
    assert {s["status"] for s in _state(database_url, subs + paid).values()} == {"pending"}
    assert rows(database_url, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
    audits = rows(
        database_url, "SELECT mode, filter, matched, replayed FROM replay_audit ORDER BY id"
    )
    assert [(a["mode"], a["matched"], a["replayed"]) for a in audits] == [
        ("dead", 3, 3),
        ("dead", 4, 4),
    ]
    assert audits[0]["filter"]["type"] == "customer.subscription.updated"
    assert audits[0]["filter"]["limit"] == 3
    nothing = run_cli(env, "replay", "--dead")
    assert nothing.returncode == 0 and "nothing replayed" in nothing.stdout


def test_a_bulk_replay_above_the_threshold_asks_first(
    env: dict[str, str], database_url: str, redis_url: str, redis_namespace: str
) -> None:
    ids = store_events(database_url, corpus_events(PAID, 5))
    kill(database_url, ids)
    small = {**env, "REPLAY_CONFIRM_THRESHOLD": "3"}
    # Not a terminal and no --yes: refuse as bad usage, change nothing.
    refused = run_cli(small, "replay", "--dead")
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert {s["status"] for s in _state(database_url, ids).values()} == {"dead"}
    assert rows(database_url, "SELECT count(*) AS n FROM replay_audit") == [{"n": 0}]
    # Below the threshold no question is asked.
    assert run_json(small, "replay", "--dead", "--limit", "3")["replayed"] == 3
    assert run_json(small, "replay", "--dead", "--yes")["replayed"] == 2
    assert enqueued_ids(redis_url, redis_namespace) == sorted(ids)


@pytest.mark.parametrize("when", ["2h", "2024-05-01", "2024-05-01T13:00:00Z", "90s", "3d"])
def test_since_accepts_dates_and_relative_times(env: dict[str, str], when: str) -> None:
    result = run_cli(env, "replay", "--dead", "--since", when, "--dry-run")
    assert result.returncode == 0, result.stderr


def test_redis_down_leaves_replayed_events_pending_for_the_sweeper(
    env: dict[str, str], database_url: str
) -> None:
    ids = store_events(database_url, corpus_events(SUB, 1))
    kill(database_url, ids)
    result = run_cli({**env, "REDIS_URL": "redis://127.0.0.1:1/0"}, "replay", ids[0])
    assert result.returncode == 0, result.stderr
    assert "could not be enqueued" in result.stderr and "sweeper" in result.stderr
    assert _state(database_url, ids)[ids[0]]["status"] == "pending"


def test_on_a_terminal_a_large_bulk_replay_asks_and_respects_the_answer(
    env: dict[str, str], database_url: str
) -> None:
    ids = store_events(database_url, corpus_events(PAID, 4))
    kill(database_url, ids)
    small = {**env, "REPLAY_CONFIRM_THRESHOLD": "2"}
    for answer, expected in (("n", "dead"), ("y", "pending")):
        primary, secondary = pty.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stripe_ingest.cli.main", "replay", "--dead"],
                env=cli_env(small),
                cwd=ROOT / "tests" / "cli",
                stdin=secondary,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            os.write(primary, f"{answer}\n".encode())
            out, err = proc.communicate(timeout=30)
        finally:
            os.close(primary)
            os.close(secondary)
        assert "Replay 4 dead events (more than 2)?" in err
        assert proc.returncode == (0 if answer == "y" else 1), err
        assert ("replayed 4 event(s)" in out) == (answer == "y")
        assert {s["status"] for s in _state(database_url, ids).values()} == {expected}


def test_replays_list_shows_the_audit_newest_first(env: dict[str, str], database_url: str) -> None:
    ids = store_events(database_url, corpus_events(PAID, 3))
    kill(database_url, ids)
    run_json(env, "replay", ids[0])
    run_json(env, "replay", "--dead", "--type", "invoice.paid", "--limit", "1")
    listed = run_json(env, "replays", "list")
    assert (listed["shown"], listed["total"]) == (2, 2)
    newest, oldest = listed["replays"]
    assert (newest["mode"], newest["replayed"], newest["via"]) == ("dead", 1, "cli")
    assert newest["filter"]["type"] == "invoice.paid" and oldest["mode"] == "ids"
    assert newest["requested_by"] and newest["finished_at"] is not None
    text = run_cli(env, "replays", "list", "--limit", "1")
    assert text.returncode == 0, text.stderr
    header, line, closing = text.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STARTED_AT", "REQUESTED_BY"]
    assert '"type":"invoice.paid"' in line and closing.startswith("1 of 2 shown")
