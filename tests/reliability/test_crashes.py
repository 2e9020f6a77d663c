"""Crashes: workers SIGKILLed mid-handler and mid-COMMIT, the web process SIGKILLed under 32
connections, everything SIGTERMed under load. Nothing acknowledged is lost, no effect is
applied twice, and each customer's events finish in creation order."""

from __future__ import annotations

import os
import signal
import threading
import time

from tests.conftest import SECRET
from tests.procs import free_port, wait_until
from tests.reliability.handlers import RECORD
from tests.reliability.harness import (
    Figures,
    Sender,
    Stack,
    assert_clean,
    events_for,
    finished,
    rows,
    tally,
    worker_processes,
)


def _effects(url: str) -> int:
    return int(rows(url, "SELECT count(*) AS n FROM rel_effects")[0]["n"])


def test_sigkill_of_a_worker_mid_handler(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    started = time.monotonic()
    events = events_for("mh", customers=8, per_customer=6, event_type=RECORD, sleep_ms=150)
    with Stack(rel_env, role_urls, free_port()) as stack:
        stack.start("web")
        worker = stack.start("worker")
        stack.start("sweeper")
        sender = Sender(stack.base_url, SECRET, concurrency=8)
        sender.send_all(events)
        # Handlers sleep inside their transaction: once a few effects are in, others are open.
        wait_until(lambda: _effects(rel_db) >= 5, timeout=30)
        victim = worker_processes(worker)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: finished(rel_db, len(events)), timeout=90, interval=0.2)
    figures = tally(
        Figures("crash", "SIGKILL a worker process mid-handler (48 events, 150 ms handlers)"),
        rel_db,
        [e["id"] for e in events],
        sender,
    )
    figures.seconds = round(time.monotonic() - started, 1)
    assert_clean(figures, stack, rel_db)


def test_sigkill_of_workers_mid_commit(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    started = time.monotonic()
    events = events_for("mc", customers=40, per_customer=10, event_type=RECORD)
    kills = 0
    with Stack(rel_env, role_urls, free_port()) as stack:
        stack.start("web")
        worker = stack.start("worker")
        stack.start("sweeper")
        sender = Sender(stack.base_url, SECRET, concurrency=16)
        sender.send_all(events)
        # Short handlers: most of a worker's time is its rounds' COMMITs. Kill one every time
        # another 60 events have finished, four times.
        for threshold in (60, 120, 180, 240):
            wait_until(lambda t=threshold: finished(rel_db, t), timeout=60, interval=0.02)
            for pid in worker_processes(worker)[:1]:
                os.kill(pid, signal.SIGKILL)
                kills += 1
        wait_until(lambda: finished(rel_db, len(events)), timeout=120, interval=0.2)
    figures = tally(
        Figures("crash", f"SIGKILL a worker process mid-COMMIT, {kills} times (400 events)"),
        rel_db,
        [e["id"] for e in events],
        sender,
    )
    figures.seconds = round(time.monotonic() - started, 1)
    assert_clean(figures, stack, rel_db)


def test_sigkill_of_web_under_32_connections(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    started = time.monotonic()
    events = events_for("kw", customers=60, per_customer=10, event_type=RECORD)
    with Stack(rel_env, role_urls, free_port()) as stack:
        web = stack.start("web")
        stack.start("worker")
        stack.start("sweeper")
        sender = Sender(stack.base_url, SECRET, concurrency=32)
        sending = threading.Thread(target=sender.send_all, args=(events, 90.0))
        sending.start()
        acked = lambda: sum(1 for d in list(sender.deliveries.values()) if d.acknowledged)  # noqa: E731
        wait_until(lambda: acked() >= 150, timeout=60, interval=0.01)
        web.send(signal.SIGKILL)
        wait_until(lambda: not web.alive(), timeout=10)
        stack.stop("web")
        stack.start("web")  # the unanswered requests are sent again, as Stripe does
        sending.join()
        wait_until(lambda: finished(rel_db, len(events)), timeout=90, interval=0.2)
    figures = tally(
        Figures("crash", "SIGKILL web under 32 connections, then start it again (600 events)"),
        rel_db,
        [e["id"] for e in events],
        sender,
    )
    figures.seconds = round(time.monotonic() - started, 1)
    unanswered = sum(1 for d in sender.deliveries.values() if 0 in d.statuses)
    figures.notes = f"{unanswered} requests got no answer and were sent again"
    assert figures.answered_200 == len(events)
    stored_once = rows(rel_db, "SELECT count(*) AS n FROM stripe_events")[0]["n"]
    assert stored_once == len(events)
    assert_clean(figures, stack, rel_db)


def test_sigterm_of_everything_under_load(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    started = time.monotonic()
    events = events_for("st", customers=40, per_customer=10, event_type=RECORD, sleep_ms=5)
    with Stack(rel_env, role_urls, free_port()) as stack:
        for kind in ("web", "worker", "sweeper"):
            stack.start(kind)
        sender = Sender(stack.base_url, SECRET, concurrency=32)
        sending = threading.Thread(target=sender.send_all, args=(events, 90.0))
        sending.start()
        wait_until(lambda: finished(rel_db, 100), timeout=60, interval=0.01)
        for kind in ("web", "worker", "sweeper"):
            stack.stop(kind)  # SIGTERM: in-flight requests and messages finish first
        for kind in ("web", "worker", "sweeper"):
            stack.start(kind)
        sending.join()
        wait_until(lambda: finished(rel_db, len(events)), timeout=90, interval=0.2)
    figures = tally(
        Figures("crash", "SIGTERM web, workers and sweeper under load, then start them (400)"),
        rel_db,
        [e["id"] for e in events],
        sender,
    )
    figures.seconds = round(time.monotonic() - started, 1)
    assert_clean(figures, stack, rel_db)
