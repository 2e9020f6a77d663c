"""The receiver's Prometheus metrics, in a registry of its own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Every outcome a webhook request can have; `stored` and `duplicate` answer 200.
OUTCOMES = (
    "stored",
    "duplicate",
    "missing_signature",
    "invalid_signature",
    "malformed_event",
    "livemode_mismatch",
    "payload_too_large",
    "request_timeout",
    "unavailable",
    "disconnected",
    "unknown_endpoint",
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class IntakeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        requests = Counter(
            "stripe_webhook_requests",
            "Webhook requests by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        # Children resolved once: `.labels()` on the hot path costs a lock and a dict lookup.
        self.requests = {outcome: requests.labels(outcome) for outcome in OUTCOMES}
        self.duplicates = Counter(
            "stripe_webhook_duplicates",
            "Verified events that were already stored.",
            registry=self.registry,
        )
        self.enqueued = Counter(
            "stripe_webhook_enqueued",
            "Event ids handed to the broker after their commit.",
            registry=self.registry,
        )
        self.enqueue_failures = Counter(
            "stripe_webhook_enqueue_failures",
            "Stored event ids the broker did not take (the sweeper enqueues them later).",
            registry=self.registry,
        )
        self.latency = Histogram(
            "stripe_webhook_request_duration_seconds",
            "Time from the request's start to its response.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "stripe_intake_batch_rows",
            "Rows written per grouped INSERT.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.database_errors = Counter(
            "stripe_intake_database_errors",
            "Grouped INSERTs that failed (their requests answered 503).",
            registry=self.registry,
        )

    def observe(self, outcome: str, seconds: float) -> None:
        self.requests[outcome].inc()
        self.latency.observe(seconds)
        if outcome == "duplicate":
            self.duplicates.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
