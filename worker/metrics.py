"""Prometheus metrics of the workers and the sweeper.

The worker processes share Dramatiq's multiprocess directory (its Prometheus middleware sets
PROMETHEUS_MULTIPROC_DIR at process boot), so prometheus_client is imported lazily, after that:
a metric made before would count in one process only. One forked exposition process serves
Dramatiq's metrics and ours on METRICS_HOST:WORKER_METRICS_PORT, plus the gauges of
worker.gauges, read from PostgreSQL and Redis at scrape time, so they are right whichever worker
is alive.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from dramatiq.middleware.prometheus import Prometheus

from shared.logging import configure_logging
from shared.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = structlog.get_logger(__name__)

LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)


class WorkerMetrics:
    """What the workers count: events finished by type and outcome, failed attempts, lag,
    events of API versions the mirror does not know."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        import prometheus_client as prom

        registry = registry or prom.CollectorRegistry()
        self.finished = prom.Counter(
            "stripe_events_finished_total",
            "Events finished, by type and outcome (processed, ignored, dead).",
            ["type", "outcome"],
            registry=registry,
        )
        self.failures = prom.Counter(
            "stripe_event_failed_attempts_total",
            "Failed processing attempts (each retried or dead-lettered).",
            ["type"],
            registry=registry,
        )
        self.lag = prom.Histogram(
            "stripe_event_lag_seconds",
            "Time until the event finished, from its creation at Stripe (since=created), its "
            "first receipt (since=received) or its latest enqueue, the receipt or the replay "
            "that put it back to pending (since=enqueued).",
            ["since"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.unknown_api_version = prom.Counter(
            "stripe_events_unknown_api_version_total",
            "Events processed at an API version whose shapes the mirror does not know "
            "(applied as far as their fields allow).",
            ["api_version"],
            registry=registry,
        )

        # Labelled children, looked up once each (a lookup costs as much as the update).
        self._lag_created = self.lag.labels("created")
        self._lag_received = self.lag.labels("received")
        self._lag_enqueued = self.lag.labels("enqueued")
        self._finished: dict[tuple[str, str], Any] = {}

    def observe_finished(
        self,
        event_type: str,
        outcome: str,
        created: datetime,
        received: datetime,
        at: datetime,
        enqueued: datetime | None = None,
    ) -> None:
        counter = self._finished.get((event_type, outcome))
        if counter is None:
            counter = self._finished[(event_type, outcome)] = self.finished.labels(
                event_type, outcome
            )
        counter.inc()
        self._lag_created.observe(max(0.0, (at - created).total_seconds()))
        self._lag_received.observe(max(0.0, (at - received).total_seconds()))
        self._lag_enqueued.observe(max(0.0, (at - (enqueued or received)).total_seconds()))


class SweeperMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        import prometheus_client as prom

        self.registry = registry or prom.CollectorRegistry()
        self.requeued = prom.Counter(
            "stripe_sweeper_requeued_total",
            "Stranded keys (their earliest pending event) the sweeper handed to the broker again.",
            registry=self.registry,
        )
        self.passes = prom.Counter(
            "stripe_sweeper_passes_total",
            "Sweeper passes, by outcome (ok, failed).",
            ["outcome"],
            registry=self.registry,
        )


class WorkerPrometheus(Prometheus):
    """Dramatiq's Prometheus middleware, with our exposition process instead of its own."""

    @property
    def forks(self) -> list[Any]:
        return [serve_metrics]


def serve_metrics() -> int:
    """Runs in a process Dramatiq forks: the multiprocess metrics plus the scrape-time gauges."""
    from dramatiq.middleware import prometheus as dramatiq_prometheus
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from worker.gauges import BrokerGauges, DatabaseGauges

    settings = Settings.from_env()
    configure_logging(settings)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=dramatiq_prometheus.DB_PATH)  # type: ignore[no-untyped-call]
    registry.register(DatabaseGauges(settings.database_url))
    registry.register(BrokerGauges(settings.redis_url, settings.redis_namespace))
    host, port = settings.metrics_host, settings.worker_metrics_port
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        log.error("worker.metrics_unavailable", host=host, port=port, error=str(e))
        return 1
    log.info("worker.metrics_serving", host=host, port=port)
    while True:
        time.sleep(3600)
