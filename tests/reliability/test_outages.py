"""Outages: Redis down at intake and under running workers, PostgreSQL restarted during
processing, PostgreSQL down at intake. Servers of the scenarios' own go down; the service
answers 503 only while PostgreSQL is away, half-writes nothing, and recovers by itself."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import psycopg

from shared.migrate import migrate
from tests.conftest import SECRET
from tests.procs import free_port, wait_until
from tests.reliability.conftest import ROLES_SQL, as_user
from tests.reliability.handlers import EFFECTS_DDL, RECORD
from tests.reliability.harness import (
    Figures,
    Sender,
    Stack,
    assert_clean,
    events_for,
    finished,
    rows,
    tally,
)
from tests.reliability.servers import PrivatePostgres, private_postgres, private_redis


@contextlib.contextmanager
def _private_database() -> Iterator[tuple[PrivatePostgres, str, dict[str, str]]]:
    """A private cluster with a migrated database, the effects table and the roles' logins."""
    with private_postgres() as pg:
        url = pg.url("stripe_ingest")
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(EFFECTS_DDL)
            conn.execute(ROLES_SQL.read_text())  # type: ignore[arg-type]
            conn.execute("CREATE ROLE si_web LOGIN IN ROLE stripe_ingest_web")
            conn.execute("CREATE ROLE si_worker LOGIN IN ROLE stripe_ingest_worker")
        yield pg, url, {"web": as_user(url, "si_web"), "worker": as_user(url, "si_worker")}


def test_redis_down_at_intake_and_under_running_workers(
    rel_env: dict[str, str], role_urls: dict[str, str], rel_db: str
) -> None:
    started = time.monotonic()
    first = events_for("rd1", customers=10, per_customer=5, event_type=RECORD)
    during = events_for("rd2", customers=10, per_customer=5, event_type=RECORD)
    port = free_port()
    env = {**rel_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    with contextlib.ExitStack() as servers, Stack(env, role_urls, free_port()) as stack:
        redis_server = servers.enter_context(private_redis(port))
        for kind in ("web", "worker", "sweeper"):
            stack.start(kind)
        sender = Sender(stack.base_url, SECRET, concurrency=16)
        sender.send_all(first)
        wait_until(lambda: finished(rel_db, len(first)), timeout=60, interval=0.1)
        redis_server.stop()
        sender.send_all(during)  # stored and acknowledged; their messages cannot be sent
        acknowledged_while_down = sum(
            1 for e in during if sender.deliveries[e["id"]].statuses == [200]
        )
        servers.enter_context(private_redis(port))  # back, and empty: the sweeper re-sends
        wait_until(lambda: finished(rel_db, len(first) + len(during)), timeout=90, interval=0.2)
    figures = tally(
        Figures("outage", "Redis stopped under running workers, 50 events sent while down"),
        rel_db,
        [e["id"] for e in first + during],
        sender,
    )
    figures.seconds = round(time.monotonic() - started, 1)
    figures.notes = f"{acknowledged_while_down} of {len(during)} answered 200 at once while down"
    assert acknowledged_while_down == len(during)
    assert_clean(figures, stack, rel_db)


def test_postgresql_restarted_during_processing(rel_env: dict[str, str]) -> None:
    started = time.monotonic()
    events = events_for("pr", customers=30, per_customer=10, event_type=RECORD, sleep_ms=10)
    with _private_database() as (pg, url, urls), Stack({**rel_env, "DATABASE_URL": url}, urls,
                                                         free_port()) as stack:  # fmt: skip
        for kind in ("web", "worker", "sweeper"):
            stack.start(kind)
        sender = Sender(stack.base_url, SECRET, concurrency=16)
        sender.send_all(events)
        wait_until(lambda: finished(url, 60), timeout=60, interval=0.02)
        pg.restart()
        wait_until(lambda: finished(url, len(events)), timeout=120, interval=0.2)
        figures = tally(
            Figures("outage", "PostgreSQL restarted while workers process 300 events"),
            url,
            [e["id"] for e in events],
            sender,
        )
        figures.seconds = round(time.monotonic() - started, 1)
        assert_clean(figures, stack, url)


def test_postgresql_down_at_intake(rel_env: dict[str, str]) -> None:
    started = time.monotonic()
    refused = events_for("pd1", customers=5, per_customer=4, event_type=RECORD)
    after = events_for("pd2", customers=5, per_customer=4, event_type=RECORD)
    with _private_database() as (pg, url, urls), Stack({**rel_env, "DATABASE_URL": url}, urls,
                                                         free_port()) as stack:  # fmt: skip
        for kind in ("web", "worker", "sweeper"):
            stack.start(kind)
        pg.stop()
        down = Sender(stack.base_url, SECRET, concurrency=8)
        down.send_all(refused, deadline_s=2.0)  # Stripe would go on retrying: 503 each time
        answers = set(down.statuses())
        pg.start()
        wait_until(pg.answers, timeout=30)
        half_written = rows(
            url, "SELECT count(*) AS n FROM stripe_events WHERE id = ANY(%s)",
            ([e["id"] for e in refused],),
        )[0]["n"]  # fmt: skip
        sender = Sender(stack.base_url, SECRET, concurrency=8)
        sender.send_all(refused + after)  # the same web process, not restarted
        wait_until(lambda: finished(url, len(refused) + len(after)), timeout=60, interval=0.2)
        figures = tally(
            Figures("outage", "PostgreSQL down at intake (40 events), then back"),
            url,
            [e["id"] for e in refused + after],
            sender,
        )
        figures.unexpected_5xx += down.unexpected_5xx()
        figures.seconds = round(time.monotonic() - started, 1)
        figures.notes = f"while down: answers {sorted(answers)}, {half_written} rows written"
        assert answers == {503}
        assert half_written == 0
        assert figures.answered_200 == len(refused) + len(after)
        assert_clean(figures, stack, url)
