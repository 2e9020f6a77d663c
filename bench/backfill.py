"""Backfill: `stripe-ingest backfill --since 30d` against the fake Stripe API (a local HTTP
server, tests/cli/fake_stripe.py) answering each list request in 150-300 ms and enforcing
Stripe's test-mode limit (25 requests a second, 429 beyond), over 30 days of synthetic events.
The baseline, a sequential read (`--parallel 1`: one listing, page after page), runs in the same
run as the parallel one (`--parallel 8`, the default), each into a fresh database. The fetch
phase is timed from the fake's first request to its last answer; wall time is the whole command
(fetching, then storing oldest first)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

import psycopg

from bench.space import Options, Space, say
from tests.cli.event_history import event_history
from tests.cli.fake_stripe import FakeStripe, serve
from tests.procs import REPO_ROOT, child_env

DAYS = 30
EVENTS, QUICK_EVENTS = 50_000, 3_000
LATENCY = (0.15, 0.3)
LIMIT = 25  # Stripe's read limit in test mode (the fake's key is sk_test_)
PARALLEL = 8


@dataclass(frozen=True)
class BackfillRun:
    name: str
    parallel: int
    events: int  # in the fake
    stored: int  # distinct events in stripe_events afterwards
    new: int  # as the command reported
    pages: int  # event pages the fake answered
    requests: int  # requests the fake received, 429s included
    rate_limited: int
    busiest_second: int  # most requests that arrived in one wall-clock second
    fetch_s: float
    wall_s: float

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.fetch_s

    @property
    def events_per_s(self) -> float:
        return self.events / self.fetch_s

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.fetch_s

    @property
    def exact(self) -> bool:
        return self.stored == self.events == self.new


@dataclass(frozen=True)
class Backfill:
    events: int
    runs: list[BackfillRun]

    def run(self, name: str) -> BackfillRun:
        return next(r for r in self.runs if r.name == name)

    @property
    def speedup(self) -> float:
        """Of events fetched a second: parallel reads a few more (partial) pages for as many."""
        return self.run("parallel").events_per_s / self.run("sequential").events_per_s


def _one(space: Space, name: str, parallel: int, count: int) -> BackfillRun:
    url, namespace = space.database(f"backfill_{name}"), space.namespace(f"backfill-{name}")
    # Made afresh for each run: the history ends now, so `--since 30d` covers all of it.
    events = event_history(count, DAYS, "bench")
    with serve(FakeStripe(events=events, latency=LATENCY, rate_limit=LIMIT)) as fake:
        env = {**space.env(url, namespace), "STRIPE_API_KEY": fake.api_key}
        env["STRIPE_API_BASE"] = fake.url
        args = ["backfill", "--since", f"{DAYS}d", "--parallel", str(parallel), "--json"]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "stripe_ingest.cli.main", *args],
            env=child_env(env),
            cwd=REPO_ROOT / "bench",
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"backfill --parallel {parallel} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(DISTINCT id) FROM stripe_events").fetchone()
    space.drop(url)
    assert fake.first_at is not None and fake.last_at is not None
    run = BackfillRun(
        name, parallel, len(events), int(row[0]) if row else 0, int(result["new"]),
        fake.served, len(fake.queries) + fake.rate_limited, fake.rate_limited,
        fake.busiest_second, fake.last_at - fake.first_at, wall,
    )  # fmt: skip
    say(
        f"backfill {name}: {run.pages} pages in {run.fetch_s:.1f} s "
        f"({run.pages_per_s:.1f}/s), {run.rate_limited} 429s, wall {wall:.1f} s"
    )
    return run


def run_backfill_bench(space: Space, opts: Options) -> Backfill:
    count = QUICK_EVENTS if opts.quick else EVENTS
    say(f"backfill: {count} events over {DAYS} days, {LATENCY[0]}-{LATENCY[1]} s per request")
    runs = [_one(space, "sequential", 1, count), _one(space, "parallel", PARALLEL, count)]
    return Backfill(count, runs)
