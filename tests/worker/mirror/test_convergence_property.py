"""Convergence, as a property: realistic lifecycles (tests/worker/mirror/lifecycles.py) delivered
in any order, with duplicates and replays, one at a time or from concurrent senders, through the
workers' own Engine, end in the same mirror rows, access decisions and notifications as the same
events delivered once each in Stripe's order.

One database for the whole test (cleared between examples), one Engine, so that 200 orders take
seconds, not minutes; the variant through real processes is in test_convergence.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.settings import Settings
from tests.worker.mirror import lifecycles as lc
from tests.worker.mirror.convergence import Deliverer, State, deliverer, in_order, merged

LIVES = {life.name: life for life in lc.all_lifecycles()}
EXAMPLES = 200


EVENTS = {e["id"]: e for life in LIVES.values() for e in life.events}
# Lifecycles chosen, (event id, replayed?) in delivery order, how they are sent, message size.
Case = tuple[list[str], list[tuple[str, bool]], str, int]


@st.composite
def deliveries(draw: st.DrawFn) -> Case:
    """Some lifecycles, their events in any order, some of them again (as a re-delivery, or as
    an operator's forced replay), and how they are sent. Ids only: a failure prints short."""
    names = sorted(draw(st.sets(st.sampled_from(sorted(LIVES)), min_size=1, max_size=3)))
    ids = [e["id"] for name in names for e in LIVES[name].events]
    order = [(i, False) for i in draw(st.permutations(ids))]
    for again in draw(st.lists(st.tuples(st.sampled_from(ids), st.booleans()), max_size=8)):
        order.insert(draw(st.integers(0, len(order))), again)
    mode = draw(st.sampled_from(["one_at_a_time", "concurrently"]))
    return names, order, mode, draw(st.integers(1, 4))


@pytest.fixture
def quiet() -> Iterator[None]:
    """Thousands of events: the workers' info and debug lines, not rendered, save half the time."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**before)


@pytest.fixture
def mirror(settings: Settings, quiet: None) -> Iterator[Deliverer]:
    with deliverer(settings) as d:
        yield d


@pytest.fixture
def references(mirror: Deliverer) -> dict[str, State]:
    found = {name: in_order(mirror, life) for name, life in LIVES.items()}
    for name, (status, reason) in lc.OUTCOMES.items():
        [sub] = [r for r in found[name]["subscriptions"]]
        assert sub["status"] == status, name
        [end] = [r for r in found[name]["access"] if r["at"].timestamp() == lc.END]
        assert end["reason"] == reason, name
    return found


def test_the_reference_is_what_stripe_ended_with(references: dict[str, State]) -> None:
    """In Stripe's order, each lifecycle ends where Stripe ended, and notifies as it should."""
    kinds = {
        name: sorted(n["kind"] for n in state["notifications"])
        for name, state in references.items()
    }
    assert kinds == {
        "ck": ["payment_succeeded"],
        "rn": ["payment_failed", "payment_failed", "payment_succeeded", "payment_succeeded"],
        "cp": ["payment_succeeded", "subscription_canceled"],
        "rd": ["dispute_opened", "payment_succeeded", "refund_issued"],
        "cd": ["payment_succeeded", "subscription_canceled"],
        "tr": ["payment_succeeded", "trial_ending"],
        "tp": ["payment_failed", "trial_ending"],
    }
    notices = [n for state in references.values() for n in state["notifications"]]
    assert all(n["customer_id"] is not None and n["awaits_charge"] is None for n in notices)
    # The failed trial's grace: counted from its failed payment, then over.
    tp = {r["at"].timestamp(): r["reason"] for r in references["tp"]["access"]}
    assert tp[lc.T0 + 15 * lc.DAY] == "past_due_grace"
    assert tp[lc.END] == "grace_expired"


def test_any_order_converges_to_in_order_delivery(
    mirror: Deliverer, references: dict[str, State]
) -> None:
    runs: list[float] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(deliveries())
    def converges(case: Case) -> None:
        names, ids, mode, batch = case
        order = [(EVENTS[i], replay) for i, replay in ids]
        started = time.monotonic()
        mirror.reset()
        if mode == "one_at_a_time":
            mirror.one_at_a_time(order)
        else:
            mirror.concurrently(order, batch)
        assert mirror.pending() == 0
        assert mirror.retries == []
        actual, expected = mirror.state(), merged(references[n] for n in names)
        for key in expected:
            assert actual[key] == expected[key], key
        runs.append(time.monotonic() - started)

    converges()
    assert len(runs) >= EXAMPLES
