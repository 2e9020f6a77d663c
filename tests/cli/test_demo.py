"""`demo` against real web, worker and sweeper processes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from tests.cli.clitools import ROOT, cli_env, run_cli
from tests.procs import free_port, run_sweeper, run_web, run_worker

pytestmark = pytest.mark.slow


def _banner_demo_args(env: dict[str, str], port: str) -> list[str]:
    """The `demo` command line `make run`'s banner prints for this port, without the program."""
    banner = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "banner.py")],
        env=cli_env(env, PORT=port),
        cwd=ROOT / "tests" / "cli",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    (line,) = [x for x in banner.splitlines() if "stripe-ingest demo" in x]
    words = shlex.split(line.split("try it", 1)[1])
    assert words[0] == ".venv/bin/stripe-ingest" and words[1] == "demo", line
    return words[1:]


def test_the_banner_prints_the_demo_command_for_the_port_in_use(env: dict[str, str]) -> None:
    assert _banner_demo_args(env, "9123") == ["demo", "--url", "http://127.0.0.1:9123"]


def test_demo_prints_the_expected_final_state(env: dict[str, str]) -> None:
    with run_web(env) as url, run_worker(env, processes=1, threads=4), run_sweeper(env):
        port = url.rsplit(":", 1)[1]
        # Without --url, demo finds the receiver on PORT.
        result = run_cli(env, "demo", "--timeout", "60", "--json", timeout=120, PORT=port)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        # Exactly what the banner tells a first-time user to run.
        text = run_cli(env, *_banner_demo_args(env, port), "--timeout", "60", timeout=120)
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
    assert "waiting for the workers: 0 of 28 events finished" in result.stderr
    assert "28 of 28 event(s) not finished after 2s; no worker has tried any of them" in (
        result.stderr
    )
    waiting = re.search(r"\((\d+) message\(s\) wait untaken in the Redis queue", result.stderr)
    assert waiting is not None and int(waiting.group(1)) >= 1, result.stderr
    assert "are the worker and sweeper running" in result.stderr


# tests/cli/demo_handlers.py's error. Importing that module here would register its failing
# handler in this process's registry, for the in-process tests that run after these.
ERROR = "disputes are broken in this demo test"


def _failure_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if "(charge.dispute.created)" in x]


def test_demo_names_the_events_that_keep_failing_when_it_times_out(env: dict[str, str]) -> None:
    failing = {
        **env,
        "USER_HANDLERS": "tests.cli.demo_handlers",
        "WORKER_MAX_RETRIES": "1000",
        "WORKER_MIN_BACKOFF_MS": "200",
        "WORKER_MAX_BACKOFF_MS": "500",
    }
    with run_web(env) as url, run_worker(failing, processes=1, threads=4), run_sweeper(failing):
        result = run_cli(failing, "demo", "--url", url, "--timeout", "15", timeout=120)
    assert result.returncode == 1, result.stderr
    (line,) = _failure_lines(result.stderr)
    assert re.search(r"evt_demo\w+ \(charge\.dispute\.created\): pending after \d+ attempt", line)
    assert f"last error: RuntimeError: {ERROR}" in line
    assert "failing (retried with backoff)" in result.stderr
    assert "not finished after 15s; workers are consuming" in result.stderr


def test_demo_names_the_events_that_died(env: dict[str, str]) -> None:
    dying = {**env, "USER_HANDLERS": "tests.cli.demo_handlers", "WORKER_MAX_RETRIES": "2"}
    with run_web(env) as url, run_worker(dying, processes=1, threads=4), run_sweeper(dying):
        result = run_cli(dying, "demo", "--url", url, "--timeout", "60", timeout=120)
    assert result.returncode == 1, result.stderr
    (line,) = _failure_lines(result.stderr)
    assert "): dead after 2 attempt(s); last error: RuntimeError: " + ERROR in line
    assert "1 demo event(s) are dead: see `stripe-ingest dead-letters list`" in result.stderr
