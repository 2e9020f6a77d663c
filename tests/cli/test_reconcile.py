"""`reconcile` against a local fake of Stripe's API (a real HTTP server), with a mirror written by
the workers' own engine from events."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.settings import Settings
from stripe_ingest.cli.stripe_lists import LIVE_RATE, TEST_RATE, StripeReader, TokenBucket
from tests.cli.clitools import rows, run_cli
from tests.cli.fake_stripe import FakeStripe, serve
from tests.worker.mirror import builders as b
from tests.worker.mirror.support import apply, wrap

TABLES = ("customers", "subscriptions", "invoices")


def _event(kind: str, obj: dict[str, Any], n: int, created: int = b.T0) -> dict[str, Any]:
    return wrap(kind, obj, f"evt_rc_{n:03d}", created + n, api_version=b.CURRENT_VERSION)


def _stripe_objects() -> dict[str, list[dict[str, Any]]]:
    """Stripe's side: two customers, three subscriptions (one canceled), two invoices."""
    return {
        "customers": [b.customer("cus_rc_a"), b.customer("cus_rc_new")],
        "subscriptions": [
            b.subscription("current", "sub_rc_ok", "cus_rc_a", "active"),
            b.subscription("current", "sub_rc_status", "cus_rc_a", "active"),
            b.subscription("current", "sub_rc_done", "cus_rc_a", "canceled"),
        ],
        "invoices": [
            b.invoice("current", "in_rc_ok", "cus_rc_a", "sub_rc_ok", "paid"),
            b.invoice(
                "current", "in_rc_stale", "cus_rc_a", "sub_rc_status", "open", attempt_count=3
            ),
        ],
    }


def _mirror_events(stripe: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The mirror's side, from events: the same objects, except a customer it never heard of
    (missing), a subscription it holds as past_due (status), an invoice it holds from an older
    snapshot (stale)."""
    by_id = {o["id"]: o for objs in stripe.values() for o in objs}
    stale = copy.deepcopy(by_id["in_rc_stale"])
    stale.update(attempt_count=1, next_payment_attempt=b.T0 + 3 * b.DAY)
    past_due = copy.deepcopy(by_id["sub_rc_status"])
    past_due["status"] = "past_due"
    return [
        _event("customer.created", by_id["cus_rc_a"], 1),
        _event("customer.subscription.created", by_id["sub_rc_ok"], 2),
        _event("customer.subscription.updated", past_due, 3),
        _event("customer.subscription.deleted", by_id["sub_rc_done"], 4),
        _event("invoice.paid", by_id["in_rc_ok"], 5),
        _event("invoice.finalized", stale, 6),
    ]


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with serve(FakeStripe(objects=_stripe_objects())) as fake:
        yield fake


@pytest.fixture
def mirrored(settings: Settings, fake: FakeStripe) -> Settings:
    outcomes = apply(settings, *_mirror_events(fake.objects))
    assert [o.status for o in outcomes] == ["processed"] * 6
    return settings


def _env(env: dict[str, str], fake: FakeStripe) -> dict[str, str]:
    return {**env, "STRIPE_API_KEY": fake.api_key, "STRIPE_API_BASE": fake.url}


def _reported(stdout: str) -> set[tuple[str, str, str]]:
    """(table, id, drift) of the rows of the human report's table."""
    found = set()
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in TABLES and "listed:" not in line:
            found.add((parts[0], parts[1], parts[2]))
    return found


EXPECTED = {
    ("customers", "cus_rc_new", "missing"),
    ("subscriptions", "sub_rc_status", "status"),
    ("invoices", "in_rc_stale", "stale"),
}


def test_reconcile_reports_exactly_the_drift_and_fix_repairs_it(
    env: dict[str, str], database_url: str, mirrored: Settings, fake: FakeStripe
) -> None:
    renv = _env(env, fake)
    human = run_cli(renv, "reconcile")
    assert human.returncode == 1, human.stderr
    assert _reported(human.stdout) == EXPECTED
    assert "customers      2 listed: 1 missing" in human.stdout
    assert "subscriptions  3 listed: 1 status" in human.stdout
    assert "invoices       2 listed: 1 stale" in human.stdout
    assert "3 drifted; `stripe-ingest reconcile --fix` repairs 3" in human.stdout
    assert "customers: 2 listed" in human.stderr  # progress
    # Canceled subscriptions are only listed when asked for.
    sub_query = next(q for p, q in zip(fake.paths, fake.queries, strict=True) if "subscr" in p)
    assert ("status", "all") in sub_query and ("limit", "100") in sub_query
    # Invoices' payments (charge, payment intent) are only in the object when expanded.
    inv_query = next(q for p, q in zip(fake.paths, fake.queries, strict=True) if "invoices" in p)
    assert [v for k, v in inv_query if k.startswith("expand")] == ["data.payments"]

    checked = run_cli(renv, "reconcile", "--json")
    assert checked.returncode == 1, checked.stderr
    report = json.loads(checked.stdout)
    assert {(d["table"], d["id"], d["drift"]) for d in report["drift"]} == EXPECTED
    drift = {d["id"]: d for d in report["drift"]}
    assert drift["sub_rc_status"]["mirror_status"] == "past_due"
    assert drift["sub_rc_status"]["stripe_status"] == "active"
    assert {"attempt_count", "next_payment_attempt"} <= set(drift["in_rc_stale"]["fields"])
    assert "status" not in drift["in_rc_stale"]["fields"]
    assert all(d["fixable"] and not d["fixed"] for d in report["drift"])
    assert report["tables"]["subscriptions"] == {
        "listed": 3,
        "missing": 0,
        "stale": 0,
        "status": 1,
        "not_at_stripe": 0,
        "fixed": 0,
    }
    # Checking wrote nothing.
    assert rows(database_url, "SELECT status FROM subscriptions WHERE id = 'sub_rc_status'") == [
        {"status": "past_due"}
    ]
    assert rows(database_url, "SELECT id FROM customers WHERE id = 'cus_rc_new'") == []

    fixed = run_cli(renv, "reconcile", "--fix", "--json")
    assert fixed.returncode == 0, fixed.stderr
    result = json.loads(fixed.stdout)
    assert (result["drifted"], result["fixed"], result["left"]) == (3, 3, 0)
    assert all(d["fixed"] for d in result["drift"])
    source = f"reconcile:{result['run_id']}"
    repaired = rows(
        database_url,
        "SELECT s.status, i.attempt_count, c.id AS customer, a.reason"
        " FROM subscriptions s, invoices i, customers c, customer_access a"
        " WHERE s.id = 'sub_rc_status' AND i.id = 'in_rc_stale' AND c.id = 'cus_rc_new'"
        " AND a.customer_id = 'cus_rc_a'",
    )
    assert repaired == [
        {"status": "active", "attempt_count": 3, "customer": "cus_rc_new", "reason": "active"}
    ]
    written = rows(
        database_url,
        "SELECT id FROM (SELECT id, source_event_id FROM customers UNION ALL"
        " SELECT id, source_event_id FROM subscriptions UNION ALL"
        " SELECT id, source_event_id FROM invoices) t WHERE source_event_id = %s ORDER BY id",
        (source,),
    )
    # Only the drifted rows were written; the others keep the event they came from.
    assert [r["id"] for r in written] == ["cus_rc_new", "in_rc_stale", "sub_rc_status"]

    again = run_cli(renv, "reconcile")
    assert again.returncode == 0, again.stderr
    assert (
        "no drift: the mirror matches Stripe" in again.stdout and _reported(again.stdout) == set()
    )
    again_json = run_cli(renv, "reconcile", "--json")
    assert again_json.returncode == 0 and json.loads(again_json.stdout)["drift"] == []

    runs = rows(
        database_url,
        "SELECT requested_by, fix, outcome, drifted, fixed, fixed_ids, finished_at IS NOT NULL"
        " AS finished FROM reconcile_runs ORDER BY id",
    )
    assert [(r["fix"], r["outcome"], r["drifted"], r["fixed"]) for r in runs] == [
        (False, "drift", 3, 0),
        (False, "drift", 3, 0),
        (True, "fixed", 3, 3),
        (False, "clean", 0, 0),
        (False, "clean", 0, 0),
    ]
    assert sorted(runs[2]["fixed_ids"]) == ["cus_rc_new", "in_rc_stale", "sub_rc_status"]
    assert all(r["requested_by"] and r["finished"] for r in runs)


def test_a_deleted_customer_is_found_and_what_fix_cannot_repair_is_left(
    env: dict[str, str], database_url: str, mirrored: Settings, fake: FakeStripe
) -> None:
    # Stripe deleted cus_rc_a (it no longer lists it); the mirror has a subscription Stripe has
    # never heard of, and one it holds canceled that Stripe says is active (canceled is final:
    # no upsert moves it back, so a person has to look).
    fake.deleted_customers.add("cus_rc_a")
    ghost = b.subscription("current", "sub_rc_ghost", "cus_rc_a", "active")
    revived = b.subscription("current", "sub_rc_revived", "cus_rc_a", "active")
    fake.objects["subscriptions"].append(revived)
    dead = {**copy.deepcopy(revived), "status": "canceled"}
    apply(
        mirrored,
        _event("customer.subscription.created", ghost, 10),
        _event("customer.subscription.deleted", dead, 11),
    )
    renv = _env(env, fake)
    report = json.loads(run_cli(renv, "reconcile", "--json").stdout)
    drift = {
        d["id"]: (d["drift"], d["mirror_status"], d["stripe_status"], d["fixable"])
        for d in report["drift"]
        if d["id"] not in {i for _, i, _ in EXPECTED}
    }
    assert drift == {
        "cus_rc_a": ("status", "present", "deleted", True),
        "sub_rc_ghost": ("not_at_stripe", None, None, False),
        "sub_rc_revived": ("status", "canceled", "active", False),
    }
    assert len(report["drift"]) == 6

    fixed = run_cli(renv, "reconcile", "--fix")
    assert fixed.returncode == 1  # drift is left
    assert "fixed 4 of 6; 2 left" in fixed.stdout
    repair = {  # TABLE ID DRIFT MIRROR STRIPE REPAIR [FIELDS]
        p[1]: p[5]
        for p in (ln.split() for ln in fixed.stdout.splitlines())
        if p and p[0] in TABLES and "listed:" not in p
    }
    assert repair == {
        "cus_rc_a": "fixed",
        "cus_rc_new": "fixed",
        "sub_rc_status": "fixed",
        "in_rc_stale": "fixed",
        "sub_rc_ghost": "manual",
        "sub_rc_revived": "manual",
    }
    assert rows(database_url, "SELECT deleted FROM customers WHERE id = 'cus_rc_a'") == [
        {"deleted": True}
    ]
    assert rows(
        database_url, "SELECT reason FROM customer_access WHERE customer_id = 'cus_rc_a'"
    ) == [{"reason": "customer_deleted"}]
    left = json.loads(run_cli(renv, "reconcile", "--json").stdout)
    assert {d["id"] for d in left["drift"]} == {"sub_rc_ghost", "sub_rc_revived"}


def test_a_row_written_after_stripe_was_read_is_not_drift(
    env: dict[str, str], mirrored: Settings, fake: FakeStripe
) -> None:
    # An event newer than the read (its `created` is in the future here) wins over the list.
    late = copy.deepcopy(fake.objects["subscriptions"][0])
    late["status"] = "past_due"
    apply(
        mirrored, _event("customer.subscription.updated", late, 0, created=int(time.time()) + 600)
    )
    report = json.loads(run_cli(_env(env, fake), "reconcile", "--json").stdout)
    assert {d["id"] for d in report["drift"]} == {"cus_rc_new", "sub_rc_status", "in_rc_stale"}


def test_reconcile_pages_through_every_list_and_passes_since(
    env: dict[str, str], settings: Settings
) -> None:
    now = int(time.time())
    customers = []
    for i in range(230):
        c = b.customer(f"cus_rc_{i:04d}")
        c["created"] = now - 2300 + i * 10 + 5  # 180 of them in the last 30 minutes
        customers.append(c)
    with serve(FakeStripe(objects={"customers": customers})) as fake:
        result = run_cli(_env(env, fake), "reconcile", "--json")
        assert result.returncode == 1
        report = json.loads(result.stdout)
        assert report["tables"]["customers"]["missing"] == 230
        pages = [
            dict(q) for p, q in zip(fake.paths, fake.queries, strict=True) if p == "/v1/customers"
        ]
        assert len(pages) == 3
        assert "starting_after" not in pages[0]
        assert pages[1]["starting_after"] == "cus_rc_0130"  # newest first
        assert pages[2]["starting_after"] == "cus_rc_0030"

        fake.queries.clear()
        fake.paths.clear()
        recent = run_cli(_env(env, fake), "reconcile", "--since", "30m", "--json")
        assert json.loads(recent.stdout)["tables"]["customers"]["listed"] == 180
        first = dict(fake.queries[0])
        assert abs(int(first["created[gte]"]) - (now - 1800)) < 60


def test_reconcile_needs_an_api_key_and_says_when_stripe_refuses(
    env: dict[str, str], fake: FakeStripe
) -> None:
    missing = run_cli({**env, "STRIPE_API_BASE": fake.url}, "reconcile")
    assert missing.returncode == 2
    assert (
        missing.stderr.strip() == "Error: STRIPE_API_KEY is not set: reconcile reads Stripe's API"
    )
    wrong = run_cli({**_env(env, fake), "STRIPE_API_KEY": "sk_test_wrong"}, "reconcile")
    assert wrong.returncode == 1 and "Invalid API Key" in wrong.stderr and wrong.stdout == ""
    assert "Stripe refused the customers list" in wrong.stderr
    (run,) = rows(env["DATABASE_URL"], "SELECT outcome, error, finished_at FROM reconcile_runs")
    assert run["outcome"] == "failed" and "Invalid API Key" in run["error"] and run["finished_at"]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_token_bucket_keeps_requests_under_the_rate() -> None:
    clock = _Clock()
    bucket = TokenBucket(20.0, burst=5, clock=clock, sleep=clock.sleep)
    taken_at = []
    for _ in range(105):
        bucket.take()
        taken_at.append(clock.now)
    assert clock.slept[:1] == [pytest.approx(0.05)] and len(clock.slept) == 100  # burst of 5
    # In any one second of (virtual) time, at most 20 requests plus the burst.
    for i, start in enumerate(taken_at):
        assert sum(start <= t < start + 1 for t in taken_at[i:]) <= 25
    assert taken_at[-1] - taken_at[0] == pytest.approx(100 / 20)
    clock.now += 60  # idle: the bucket refills to its burst, no more
    for _ in range(5):
        bucket.take()
    assert len(clock.slept) == 100
    bucket.take()
    assert len(clock.slept) == 101


def test_the_rate_follows_the_key_mode(settings: Settings) -> None:
    test_mode = StripeReader(settings.with_overrides(stripe_api_key="sk_test_x"))
    live_mode = StripeReader(settings.with_overrides(stripe_api_key="rk_live_x"))
    assert (test_mode.livemode, test_mode.bucket.rate) == (False, TEST_RATE)
    assert (live_mode.livemode, live_mode.bucket.rate) == (True, LIVE_RATE)
    assert TEST_RATE < 25 and LIVE_RATE < 100  # Stripe's limits
