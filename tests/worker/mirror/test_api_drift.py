"""API-version drift: events of a version whose shapes the mirror does not know are applied as
far as their fields allow, counted in a metric and named by `stripe-ingest stats`."""

from __future__ import annotations

import json

import prometheus_client
import pytest
import structlog

from shared.db import make_pool
from shared.settings import Settings
from tests.cli.clitools import run_cli, run_json
from tests.support import corpus_files, load_event
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import PENDING_KEYS, row, store, wrap
from worker.engine import Engine
from worker.metrics import WorkerMetrics
from worker.mirror import versions

UNKNOWN = "2027-03-31.fig"


@pytest.mark.parametrize(
    "version",
    [
        "2017-12-14",
        "2020-08-27",
        "2024-06-20",
        "2024-09-30.acacia",
        "2025-03-31.basil",
        "2025-08-27.basil",
        "2025-11-17.clover",
        "2026-05-27.dahlia",
        "2026-10-28.endive",
    ],
)
def test_dated_versions_and_named_releases_the_shapes_read_are_known(version: str) -> None:
    assert versions.is_known(version)


@pytest.mark.parametrize(
    "version",
    [
        UNKNOWN,  # a release named after the newest one the shapes read
        "2025-05-28.preview",  # preview versions render other shapes
        "2024-10-28",  # every version since acacia has a name
        "2025-13-01.basil",
        "basil",
        "",
        "2025-03-31.basil; extra",
    ],
)
def test_other_versions_are_unknown(version: str) -> None:
    assert not versions.is_known(version)


def test_every_version_of_the_corpus_is_known() -> None:
    found = {load_event(f.name).get("api_version") for f in corpus_files()}
    found.discard(None)
    assert found and all(versions.is_known(v) for v in found)


def _process(settings: Settings, metrics: WorkerMetrics) -> None:
    pool = make_pool(settings.database_url, min_size=1, max_size=2, name="drift-tests")
    pool.open(wait=True)
    try:
        engine = Engine(pool=pool, settings=settings, enqueue=lambda *_: None, metrics=metrics)
        with pool.connection() as conn:
            keys = [r["ordering_key"] for r in conn.execute(PENDING_KEYS).fetchall()]
        for key in keys:
            engine.drain(key)
    finally:
        pool.close()


def test_an_unknown_version_is_applied_counted_and_logged_once(settings: Settings) -> None:
    sub = b.subscription("current", "sub_drift", "cus_drift", "active")
    events = [
        wrap("customer.subscription.created", sub, "evt_drift_1", b.T0, api_version=UNKNOWN),
        wrap("customer.subscription.updated", sub, "evt_drift_2", b.T0 + 1, api_version=UNKNOWN),
        b.event("customer.created", b.customer("cus_drift"), "evt_drift_3", b.T0, "current"),
        wrap("ping.unhandled", {"id": "x_1"}, "evt_drift_4", b.T0, api_version=UNKNOWN),
    ]
    store(settings, events)
    registry = prometheus_client.CollectorRegistry()
    with structlog.testing.capture_logs() as logs:
        _process(settings, WorkerMetrics(registry))

    found = row(settings, "subscriptions", "sub_drift")
    assert found is not None and found["status"] == "active"
    assert found["current_period_end"] is not None  # read from the items, as for basil

    def count(version: str) -> float:
        name = "stripe_events_unknown_api_version_total"
        return registry.get_sample_value(name, {"api_version": version}) or 0.0

    # Processed events only: the ignored one (no handler read it) is not counted.
    assert count(UNKNOWN) == 2
    assert count(b.CURRENT_VERSION) == 0
    warned = [e for e in logs if e["event"] == "mirror.unknown_api_version"]
    assert [(e["api_version"], e["log_level"]) for e in warned] == [(UNKNOWN, "warning")]


def test_stats_names_the_unknown_versions_and_how_many_events(
    env: dict[str, str], settings: Settings
) -> None:
    cus = b.customer("cus_stats")
    store(
        settings,
        [
            wrap("customer.updated", cus, "evt_st_1", b.T0, api_version=UNKNOWN),
            wrap("customer.updated", cus, "evt_st_2", b.T0 + 1, api_version=UNKNOWN),
            wrap("customer.updated", cus, "evt_st_3", b.T0 + 2, api_version="2025-05-28.preview"),
            b.event("customer.updated", cus, "evt_st_4", b.T0 + 3, "current"),
            b.event("customer.updated", cus, "evt_st_5", b.T0 + 4, "old"),
        ],
    )
    stats = run_json(env, "stats")
    assert stats["unknown_api_versions"] == [
        {"api_version": "2025-05-28.preview", "events": 1},
        {"api_version": UNKNOWN, "events": 2},
    ]
    human = run_cli(env, "stats")
    assert human.returncode == 0, human.stderr
    assert (
        f"api versions not known to the mirror: 2025-05-28.preview (1 event), {UNKNOWN} (2 events)"
    ) in human.stdout


def test_stats_says_nothing_of_versions_when_all_are_known(
    env: dict[str, str], settings: Settings
) -> None:
    store(settings, [b.event("customer.updated", b.customer("cus_ok"), "evt_ok_1", b.T0)])
    assert run_json(env, "stats")["unknown_api_versions"] == []
    human = run_cli(env, "stats")
    assert human.returncode == 0 and "not known to the mirror" not in human.stdout
    assert json.loads(run_cli(env, "stats", "--json").stdout)["total"] == 1
