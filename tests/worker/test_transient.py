"""`worker.transient`: in-process retries of calls to other systems inside a handler, here a
Stripe client talking to a local HTTP server that fails before it answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from psycopg_pool import ConnectionPool

from shared.db import Connection
from shared.settings import Settings
from tests.worker.support import T0, make_event, one, store
from worker.engine import Engine
from worker.registry import Event, Registry, Tx
from worker.transient import is_transient, transient


class FlakyStripe:
    """GET /v1/customers/<id>: answers `failures` statuses in turn, then the customer."""

    def __init__(self, failures: list[int]) -> None:
        self.failures = list(failures)
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                status = outer.failures.pop(0) if outer.failures else 200
                body = {"id": self.path.rsplit("/", 1)[-1], "object": "customer"}
                if status != 200:
                    body = {"error": {"type": "api_error", "message": "try later"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def client(self) -> stripe.StripeClient:
        return stripe.StripeClient(
            "sk_test_transient", base_addresses={"api": self.url}, max_network_retries=0
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stripe_api() -> Iterator[FlakyStripe]:
    api = FlakyStripe([])
    yield api
    api.close()


def processor_with(
    handler_type: str, api: FlakyStripe, pool: ConnectionPool[Connection], settings: Settings
) -> Engine:
    registry = Registry()

    @transient
    def fetch_customer(customer_id: str) -> stripe.Customer:
        return api.client().v1.customers.retrieve(customer_id)

    @registry.handles(handler_type)
    def refresh(tx: Tx, event: Event) -> None:
        customer = fetch_customer(event.object["customer"])
        tx.execute("SELECT %s::text", (customer.id,))

    return Engine(pool=pool, settings=settings, enqueue=lambda *_: None, registry=registry)


def test_stripe_5xx_and_429_are_retried_in_process_without_spending_event_attempts(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, stripe_api: FlakyStripe
) -> None:
    stripe_api.failures = [503, 429]
    store(effects_db, [make_event("evt_t", "cus_t", T0, "test.transient")])
    processor = processor_with("test.transient", stripe_api, pool, settings)
    assert [o.status for o in processor.handle("evt_t")] == ["processed"]
    assert stripe_api.requests == 3
    assert one(effects_db, "SELECT attempts FROM stripe_events")["attempts"] == 1


def test_other_errors_fail_the_attempt_at_once(
    effects_db: str, pool: ConnectionPool[Connection], settings: Settings, stripe_api: FlakyStripe
) -> None:
    stripe_api.failures = [400]
    store(effects_db, [make_event("evt_t", "cus_t", T0, "test.transient")])
    processor = processor_with("test.transient", stripe_api, pool, settings)
    assert [o.status for o in processor.handle("evt_t")] == ["retry"]
    assert stripe_api.requests == 1
    row = one(effects_db, "SELECT attempts, last_error FROM stripe_events")
    assert row["attempts"] == 1 and row["last_error"].startswith("InvalidRequestError")


def test_transient_gives_up_after_its_attempts() -> None:
    calls = []

    @transient(attempts=2, max_wait_s=0.01)
    def always_down() -> None:
        calls.append(1)
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        always_down()
    assert len(calls) == 2


def test_what_counts_as_transient() -> None:
    import psycopg

    assert is_transient(TimeoutError())
    assert is_transient(stripe.APIConnectionError("down"))
    assert not is_transient(ValueError())
    assert not is_transient(psycopg.OperationalError("connection lost"))
