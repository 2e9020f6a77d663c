"""Backoff and lock ids; the workers' metrics; the supervisor's refusal of a bad configuration."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import prometheus_client
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.errors import error_line
from shared.settings import Settings
from tests.procs import run_worker, wait_until
from tests.worker import handlers as h
from tests.worker.support import T0, make_event, store
from worker.engine import Engine
from worker.gauges import DatabaseGauges
from worker.metrics import WorkerMetrics
from worker.policy import backoff_ms, key_lock_id
from worker.supervisor import Supervisor


def test_backoff_grows_exponentially_within_bounds_with_jitter() -> None:
    assert backoff_ms(1, 1000, 300_000, rand=lambda: 1.0) == 1000
    assert backoff_ms(2, 1000, 300_000, rand=lambda: 1.0) == 2000
    assert backoff_ms(5, 1000, 300_000, rand=lambda: 1.0) == 16_000
    assert backoff_ms(30, 1000, 300_000, rand=lambda: 1.0) == 300_000
    assert backoff_ms(500, 1000, 300_000, rand=lambda: 0.0) == 150_000
    # Jitter draws from the upper half of the ceiling, never below the minimum.
    assert backoff_ms(3, 1000, 300_000, rand=lambda: 0.0) == 2000
    assert backoff_ms(1, 1000, 300_000, rand=lambda: 0.0) == 1000


def test_lock_ids_are_stable_signed_64_bit_and_distinct() -> None:
    ids = {key_lock_id(f"cus_{i}") for i in range(10_000)}
    assert len(ids) == 10_000
    assert all(-(2**63) <= i < 2**63 for i in ids)
    assert key_lock_id("cus_ABC") == key_lock_id("cus_ABC")
    assert any(i < 0 for i in ids)


def test_error_lines_are_one_redacted_line() -> None:
    error = RuntimeError("customer jane@example.com\nfailed with sk_live_abcdefghijkl")
    line = error_line(error)
    assert "\n" not in line and "jane@" not in line and "abcdefghijkl" not in line
    assert line.startswith("RuntimeError: customer ***@***")


def test_metrics_count_outcomes_failures_and_lag(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings
) -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = WorkerMetrics(registry)
    processor = Engine(
        pool=pool, settings=settings, enqueue=lambda *_: None, metrics=metrics, worker_id="m"
    )
    store(
        effects_db,
        [
            make_event("evt_ok", "cus_1", T0, h.RECORD),
            make_event("evt_ign", "cus_2", T0, "test.worker.nobody_handles_this"),
            make_event("evt_bad", "cus_3", T0, h.POISON),
        ],
    )
    for event_id in ("evt_ok", "evt_ign", "evt_bad"):
        processor.handle(event_id)
    for _ in range(settings.worker_max_retries - 1):
        time.sleep(settings.worker_max_backoff_ms / 1000)
        processor.handle("evt_bad")

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    total = "stripe_events_finished_total"
    assert value(total, type=h.RECORD, outcome="processed") == 1
    assert value(total, type="test.worker.nobody_handles_this", outcome="ignored") == 1
    assert value(total, type=h.POISON, outcome="dead") == 1
    assert value("stripe_event_failed_attempts_total", type=h.POISON) == 3
    assert value("stripe_event_lag_seconds_count", since="received") == 3
    # Stripe's `created` is years ago in these events: the lag from it is large.
    assert value("stripe_event_lag_seconds_bucket", since="created", le="86400.0") == 0

    gauges = {m.name: m.samples[0].value for m in DatabaseGauges(effects_db).collect()}
    assert gauges["stripe_ingest_database_up"] == 1
    assert gauges["stripe_events_backlog"] == 0
    assert gauges["stripe_events_dead"] == 1


def test_database_gauges_report_down() -> None:
    gauges = list(DatabaseGauges("postgresql://127.0.0.1:1/none").collect())
    assert [(m.name, m.samples[0].value) for m in gauges] == [("stripe_ingest_database_up", 0)]


def test_supervisor_exits_2_when_a_handler_module_does_not_import(env: dict[str, str]) -> None:
    bad = {**env, "USER_HANDLERS": "tests.worker.no_such_module"}
    with run_worker(bad, processes=1, threads=1, wait_ready=False) as worker:
        wait_until(lambda: not worker.alive(), timeout=60)
        assert worker.proc.returncode == 2, worker.logs()
    assert "worker.configuration_error" in worker.logs()
    assert "No module named 'tests.worker.no_such_module'" in worker.logs()


def test_supervisor_makes_idle_workers_poll_every_100_ms_unless_told_otherwise(
    tmp_path: Path,
) -> None:
    """Dramatiq's default idle back-off (1 s) delayed the first event after a quiet spell."""
    out = tmp_path / "timeout"
    script = "import os, sys; open(sys.argv[1], 'w').write(os.environ['dramatiq_worker_timeout'])"
    child = Supervisor([sys.executable, "-c", script, str(out)])._start()
    assert child.wait(10) == 0
    assert out.read_text() == "100"
