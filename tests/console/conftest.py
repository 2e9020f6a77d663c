"""The console under test: the real process (`python -m stripe_ingest.console`) against a test
database holding dead letters, a customer with a dispute keyed by its charge, and more."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from shared.settings import Settings
from tests.cli.clitools import corpus_events, kill, store_events
from tests.procs import Served, run_console
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply

TOKEN = "console-test-token-0123456789abcdef"
COUPON = "stripe-ruby-mock__coupon.created__1"
PAID = "stripe-ruby-mock__invoice.paid__1"
# A payload value the pages must show (escaped) and the logs must never contain.
MARKER = "<script>alert('payload-marker-5f1c')</script>"


@dataclass(frozen=True)
class Seeded:
    coupons: list[str]  # dead: "RuntimeError: coupon handler is broken ..."
    paid: list[str]  # dead: "KeyError: 'lines'"
    customer: str
    dispute_event: str


def seed(settings: Settings) -> Seeded:
    t = b.T0
    apply(
        settings,
        b.event("customer.created", b.customer("cus_console"), "evt_cc_1", t),
        b.event(
            "customer.subscription.updated",
            b.subscription("old", "sub_console", "cus_console", "active"),
            "evt_cc_2",
            t + 1,
        ),
        b.event("charge.succeeded", b.charge("ch_console", "cus_console"), "evt_cc_3", t + 2),
        b.event("charge.dispute.created", b.dispute("dp_console", "ch_console"), "evt_cc_4", t + 3),
    )
    coupons = corpus_events(COUPON, 2, "c")
    coupons[0]["data"]["object"]["name"] = MARKER
    coupon_ids = store_events(settings.database_url, coupons)
    paid_ids = store_events(settings.database_url, corpus_events(PAID, 3, "p"))
    kill(settings.database_url, coupon_ids, "RuntimeError: coupon handler is broken until fixed")
    kill(settings.database_url, paid_ids, "KeyError: 'lines'")
    return Seeded(coupon_ids, paid_ids, "cus_console", "evt_cc_4")


@pytest.fixture
def console_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "CONSOLE_TOKEN": TOKEN, "LOG_LEVEL": "info"}


@pytest.fixture
def seeded(settings: Settings) -> Seeded:
    return seed(settings)


@pytest.fixture
def console(console_env: dict[str, str], seeded: Seeded) -> Iterator[Served]:
    with run_console(console_env) as served:
        yield served
