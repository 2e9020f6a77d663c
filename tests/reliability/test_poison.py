"""Poison: an event that fails in its handler, at its finishing UPDATE (a trigger), at COMMIT (a
deferred constraint) or by killing its worker process. Each ends dead with its dead letter, its
customer's later events are processed, and other customers are not held up by it."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from tests.conftest import SECRET
from tests.procs import free_port, wait_until
from tests.reliability.handlers import KILL, POISON, RECORD
from tests.reliability.harness import Figures, Sender, Stack, leaks, rows, tally
from tests.worker.support import T0, make_event

# Refuse to finish `evt_p_update` (its UPDATE to processed) and `evt_p_commit` (at COMMIT), with
# a DETAIL quoting personal data that must never reach a log line or a stored error.
TRIGGERS = """
CREATE FUNCTION rel_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = TG_ARGV[0] AND NEW.status IN ('processed', 'ignored') THEN
        RAISE EXCEPTION 'refused by a trigger'
            USING DETAIL = 'Failing row contains (jane.doe@example.com, 4242424242424242)';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER rel_refuse_update BEFORE UPDATE ON stripe_events
    FOR EACH ROW EXECUTE FUNCTION rel_refuse('evt_p_update');
CREATE CONSTRAINT TRIGGER rel_refuse_commit AFTER UPDATE ON stripe_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rel_refuse('evt_p_commit');
"""

# Dramatiq's worker group after one of its processes was killed: the supervisor's restart delay
# (0.5 s doubling) and the boot of a new group.
GROUP_RESTART_S = 3.0

KINDS = {
    "handler": ("evt_p_handler", POISON),
    "update": ("evt_p_update", RECORD),
    "commit": ("evt_p_commit", RECORD),
    "kill": ("evt_p_kill", KILL),
}


def _delays(status: dict[str, dict[str, Any]], events: list[dict[str, Any]]) -> list[float]:
    return sorted(
        (status[e["id"]]["processed_at"] - status[e["id"]]["received_at"]).total_seconds()
        for e in events
    )


def test_poison_events_die_and_hold_nobody_up(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    # A lease well above a loaded machine's intake-to-finish time: an event that waited for the
    # sweeper (what a failure outside the handler used to cost its neighbours) shows plainly.
    rel_env = {**rel_env, "SWEEPER_LEASE_SECONDS": "5"}
    started = time.monotonic()
    with psycopg.connect(rel_db, autocommit=True) as conn:
        conn.execute(TRIGGERS)  # type: ignore[arg-type]
    phases: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    for kinds in (("handler", "update", "commit"), ("kill",)):
        poison = []
        for kind in kinds:
            event_id, event_type = KINDS[kind]
            poison.append(make_event(event_id, f"cus_p_{kind}", T0, event_type))
            poison.append(make_event(f"evt_p_{kind}_after", f"cus_p_{kind}", T0 + 1, RECORD))
        others = [
            make_event(f"evt_p_{kinds[0]}_other_{i:02d}", f"cus_p_{kinds[0]}_o{i:02d}", T0, RECORD)
            for i in range(16)
        ]
        phases.append((poison, others))
    with Stack(rel_env, role_urls, free_port()) as stack:
        stack.start("web")
        stack.start("worker", processes=2, threads=4)
        stack.start("sweeper")
        sender = Sender(stack.base_url, SECRET, concurrency=16)

        def settled() -> bool:
            found = rows(rel_db, "SELECT count(*) AS n FROM stripe_events WHERE status = 'pending'")
            return bool(found[0]["n"] == 0)

        for poison, others in phases:  # the failing ones first, then the killer
            sender.send_all(poison + others)
            wait_until(settled, timeout=150, interval=0.2)
    status = {r["id"]: r for r in rows(rel_db, "SELECT * FROM stripe_events")}
    letters = {r["event_id"]: r for r in rows(rel_db, "SELECT * FROM dead_letters")}
    assert set(letters) == {event_id for event_id, _ in KINDS.values()}
    for kind, (event_id, _) in KINDS.items():
        assert status[event_id]["status"] == "dead", kind
        assert status[f"evt_p_{kind}_after"]["status"] == "processed", kind
        assert letters[event_id]["attempts"] == 3, kind
        assert "example.com" not in letters[event_id]["error"], kind
        assert "4242" not in (letters[event_id]["traceback"] or ""), kind
    assert "worker process died" in letters["evt_p_kill"]["error"]
    failing, killing = (_delays(status, others) for _, others in phases)
    everything = [e for poison, others in phases for e in poison + others]
    figures = tally(
        Figures("poison", "failing in a handler, at the finishing UPDATE, at COMMIT, killing"),
        rel_db,
        [e["id"] for e in everything],
        sender,
    )
    lease = float(rel_env["SWEEPER_LEASE_SECONDS"])
    retries = int(rel_env["WORKER_MAX_RETRIES"])
    figures.notes = (
        "4 dead, each with its dead letter; their customers' later events processed; "
        f"other customers' receipt to finish beside a failing event: max {failing[-1]:.2f} s; "
        f"beside the killer (its worker group restarts, the sweeper re-sends after its "
        f"{lease:.0f} s lease): max {killing[-1]:.2f} s"
    )
    figures.seconds = round(time.monotonic() - started, 1)
    assert figures.lost == 0 and figures.duplicate_effects == 0, figures
    assert figures.unexpected_5xx == 0 and figures.finished == figures.sent, figures
    # Beside a failing event, nobody waits for its retries (one retry's backoff at most).
    assert failing[-1] < lease
    # Beside a killer, the events its worker group was running wait for the sweeper's lease
    # and a restart of the group, once per kill, not for a message timeout of minutes.
    assert killing[-1] < retries * (lease + GROUP_RESTART_S)
    assert leaks(stack.ran) == []
    figures.record()
