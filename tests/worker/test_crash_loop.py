"""A handler that kills its own worker process is dead-lettered, and nobody waits for good.

Real `python -m worker` processes and the sweeper. Each kill takes down the Dramatiq process
group (the supervisor starts it again); the sweeper re-sends what was in flight as suspects,
whose attempts are counted before they run, so the killer runs out of attempts.
"""

from __future__ import annotations

from shared.db import connect
from shared.settings import Settings
from tests.procs import run_sweeper, run_worker, wait_until
from tests.worker import handlers as h
from tests.worker.support import T0, effects, make_event, one, query, statuses, store
from tests.worker.test_processes import HANDLERS, send


def test_a_handler_that_kills_its_worker_is_dead_lettered_and_its_key_goes_on(
    effects_db: str, env: dict[str, str], settings: Settings
) -> None:
    killer = make_event("evt_killer", "cus_k", T0, h.KILL)
    after = make_event("evt_after", "cus_k", T0 + 1, h.RECORD)
    others = [make_event(f"evt_o{i}", f"cus_o{i}", T0, h.RECORD) for i in range(6)]
    events = [killer, after, *others]
    store(effects_db, events)
    worker_env = {**env, "USER_HANDLERS": HANDLERS}
    with run_worker(worker_env, processes=1, threads=4), run_sweeper(worker_env):
        send(settings, [e["id"] for e in events], events=events)  # the receiver's batches
        wait_until(lambda: statuses(effects_db).get("pending", 0) == 0, timeout=120, interval=0.2)
    assert statuses(effects_db) == {"dead": 1, "processed": 7}
    dead = one(effects_db, "SELECT event_id, attempts, error FROM dead_letters")
    assert dead["event_id"] == "evt_killer"
    assert dead["attempts"] == settings.worker_max_retries
    assert "worker process died" in dead["error"]
    # Its customer's later event went on after it; every other event took effect once.
    assert effects(effects_db) == {e["id"]: 1 for e in events if e["id"] != "evt_killer"}
    rows = query(
        effects_db,
        "SELECT outcome FROM event_attempts WHERE event_id = 'evt_killer' ORDER BY attempt, id",
    )
    # Each claimed attempt was left running when its worker died; then the dead letter.
    assert [r["outcome"] for r in rows] == ["running"] * settings.worker_max_retries + ["dead"]


def test_a_killer_inside_a_backlog_is_still_dead_lettered_and_the_backlog_finishes(
    effects_db: str, env: dict[str, str], settings: Settings
) -> None:
    # Stored, never sent (Redis lost the messages): the sweeper re-sends a backlog in ordinary
    # messages first, so the killer takes its worker group down once more than alone before
    # it is a suspect; it still runs out of attempts, and everyone else's event takes effect once.
    killer = make_event("evt_killer", "cus_k", T0, h.KILL)
    after = make_event("evt_after", "cus_k", T0 + 1, h.RECORD)
    others = [make_event(f"evt_b{i:03d}", f"cus_b{i:03d}", T0, h.RECORD) for i in range(300)]
    events = [*others[:150], killer, after, *others[150:]]
    store(effects_db, events, one_by_one=False)
    with connect(effects_db, autocommit=True) as conn:
        conn.execute("UPDATE stripe_events SET enqueued_at = now() - interval '1 hour'")
    worker_env = {**env, "USER_HANDLERS": HANDLERS}
    with run_worker(worker_env, processes=1, threads=4), run_sweeper(worker_env):
        wait_until(lambda: statuses(effects_db).get("pending", 0) == 0, timeout=150, interval=0.2)
    assert statuses(effects_db) == {"dead": 1, "processed": len(events) - 1}
    dead = one(effects_db, "SELECT event_id, attempts, error FROM dead_letters")
    assert (dead["event_id"], dead["attempts"]) == ("evt_killer", settings.worker_max_retries)
    assert "worker process died" in dead["error"]
    assert effects(effects_db) == {e["id"]: 1 for e in events if e["id"] != "evt_killer"}
