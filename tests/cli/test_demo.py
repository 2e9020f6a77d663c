"""`demo` against real web, worker and sweeper processes."""

from __future__ import annotations

import json

import pytest

from tests.cli.clitools import run_cli
from tests.procs import free_port, run_sweeper, run_web, run_worker

pytestmark = pytest.mark.slow


def test_demo_prints_the_expected_final_state(env: dict[str, str]) -> None:
    with run_web(env) as url, run_worker(env, processes=1, threads=4), run_sweeper(env):
        result = run_cli(env, "demo", "--url", url, "--timeout", "60", "--json", timeout=120)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        text = run_cli(env, "demo", "--url", url, "--timeout", "60", timeout=120)
    assert text.returncode == 0, text.stderr

    assert out["duplicates"] == 3 and all(d["status"] == 200 for d in out["deliveries"])
    assert {e["status"] for e in out["events"]} <= {"processed", "ignored"}
    assert len(out["events"]) == len(out["deliveries"]) - 3
    mirror = out["mirror"]
    for table in ("subscriptions", "invoices", "disputes"):
        got = {row["id"]: row["status"] for row in mirror[table]}
        assert got == out["expected"][table], table
    charges = {row["id"]: row for row in mirror["charges"]}
    customers = out["customers"]
    refunded = next(c for c in charges.values() if c["customer_id"] == customers["B"])
    assert refunded["refunded"] is True and refunded["amount_refunded"] == refunded["amount"]
    disputed = next(c for c in charges.values() if c["customer_id"] == customers["C"])
    assert disputed["disputed"] is True
    failed = [c for c in charges.values() if c["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["failure_code"] == "card_declined"
    access = {row["customer_id"]: row["has_access"] for row in mirror["customer_access"]}
    assert access == {customers["A"]: True, customers["B"]: False, customers["C"]: False}
    assert out["stats"]["counts"]["pending"] == 0

    # The human-readable run: fresh ids, the same story.
    lines = text.stdout
    assert "sending 31 deliveries (28 events)" in lines and "3 of them duplicates" in lines
    for heading in ("EVENTS", "SUBSCRIPTIONS", "INVOICES", "CHARGES", "DISPUTES", "STATS"):
        assert f"\n{heading}" in lines
    assert (
        "canceled" in lines
        and "needs_response" in lines
        and "past_due" not in lines.split("\nSUBSCRIPTIONS")[1].split("\nINVOICES")[0]
    )


def test_demo_exits_1_when_the_receiver_does_not_answer(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(env, "demo", "--url", url)
    assert result.returncode == 1
    assert f"the receiver does not answer at {url}" in result.stderr


def test_demo_exits_1_when_the_events_do_not_finish_in_time(env: dict[str, str]) -> None:
    with run_web(env) as url:
        result = run_cli(env, "demo", "--url", url, "--timeout", "2")
    assert result.returncode == 1
    assert "not finished after 2s" in result.stderr and "worker" in result.stderr
