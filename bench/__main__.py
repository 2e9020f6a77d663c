"""`python -m bench`: receiver, pipeline, backfill, retention, many-hosts, catch-up and growth
benchmarks against baselines, in one invocation.

Uses fresh databases and Redis namespaces of its own (dropped / deleted at the end), starts
every server itself, and writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from bench import growth, system
from bench.backfill import run_backfill_bench
from bench.catchup import run_catchup_bench
from bench.growth import run_growth_bench
from bench.hosts import run_hosts_bench
from bench.pipeline import run_pipeline_bench
from bench.receiver import ensure_wrk, run_receiver_bench
from bench.report import VERDICT, Results, Target, render, targets
from bench.retention import run_retention_bench
from bench.space import WORK, Options, Space, say
from shared.errors import error_line

T = TypeVar("T")

HELP = {
    "duration": "seconds of wrk per server",
    "events": "events per pipeline phase",
    "repeats": "runs per receiver server and of the drain and trivial phases, alternating (the "
    "median run is compared); growth: receiver runs and drains per size in the grown and in an "
    "empty database, alternating",
    "quick": "3 s per server, 300 events, small backfill, retention, catch-up and growth sizes: "
    "check the harness",
    "sizes": "stripe_events sizes of the growth phase, comma-separated (throughputs: against an "
    "empty database measured beside each size)",
    "strict": "exit 1 when a target is missed",
    "retention_events": "old events purged under load, and per fill-and-purge cycle (--quick: "
    "20,000)",
    "retention_cycles": "fill-and-purge cycles (--quick: 2)",
    "backlog": "pending events the catch-up drains (bench/catchup.py)",
}


def parse_args(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    for option in dataclasses.fields(Options):
        default, flag = getattr(Options(), option.name), f"--{option.name}"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=HELP.get(option.name))
        else:
            parser.add_argument(
                flag, type=type(default), default=default, help=HELP.get(option.name)
            )
    opts = Options(**vars(parser.parse_args(argv)))
    if opts.quick:
        sizes = "0,20000" if opts.sizes == Options().sizes else opts.sizes
        return dataclasses.replace(
            opts, duration=3.0, events=300, warmup=100, repeats=1, backlog=3000, sizes=sizes
        )
    return opts


def main(argv: list[str]) -> int:
    opts, space, started = parse_args(argv), Space(), datetime.now(UTC)
    try:
        wrk = ensure_wrk()
    except FileNotFoundError as e:
        say(str(e))
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    machine, load = system.describe(space.redis_url, wrk), [system.load_average()]
    say(f"run {space.run_id}: databases bench_{space.run_id}_*, Redis {space.redis_url}")
    failed: list[Target] = []

    def phase(name: str, run: Callable[[], T]) -> T | None:
        """A later phase that fails is reported as a failed target; the others still run."""
        try:
            return run()
        except Exception as e:
            say(f"{name} failed:", "".join(traceback.format_exception(e))[-3000:])
            failed.append(Target(f"{name} phase", "runs to the end", error_line(e), False))
            return None

    try:
        runs, events = run_receiver_bench(space, opts)
        pipeline = run_pipeline_bench(space, opts)
        backfill = phase("backfill", lambda: run_backfill_bench(space, opts))
        retention = phase("retention", lambda: run_retention_bench(space, opts))
        hosts = phase("many hosts", lambda: run_hosts_bench(space, opts))
        catchup = phase("catch-up", lambda: run_catchup_bench(space, opts, pipeline))
        grown = phase("growth", lambda: run_growth_bench(space, opts))
    finally:
        space.close()
    argv_shown = shlex.join(["python", "-m", "bench", *argv])
    load.append(system.load_average())
    results = Results(opts, argv_shown, machine, load, started, runs, events, pipeline)
    results.backfill = backfill
    results.retention = retention
    results.hosts, results.catchup = hosts, catchup
    if grown is not None:
        results.more_targets, results.more_sections = growth.targets(grown), growth.section(grown)
    results.more_targets += failed
    opts.output.write_text(render(results))
    say(f"wrote {opts.output} in {(results.finished - started).total_seconds():.0f} s")
    for t in targets(results):
        print(f"{VERDICT[t.passed]}  {t.name}: {t.measured} (goal {t.goal})")
    return 1 if opts.strict and not all(t.passed for t in targets(results)) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
