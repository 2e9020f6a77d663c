"""`python -m bench`: receiver and pipeline benchmarks against baselines, in one invocation.

Uses its own fresh databases and Redis namespaces (dropped / deleted at the end), starts every
server itself, and writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import machine
from bench.infra import WORK, Databases, RedisSpace, new_run_id, pick_redis_db, say
from bench.pipeline import pipeline_events, profile_workers, run_pipeline_bench, worker_available
from bench.receiver import SERVERS, profile_server, run_receiver_bench
from bench.report import Results, render, targets
from bench.tools import MissingTool, ensure_wrk

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--events", type=int, default=10_000, help="events per pipeline phase")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up requests per server")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs per receiver server and of the drain and trivial phases, alternating "
        "(the median run is compared)",
    )
    parser.add_argument("--only", choices=("receiver", "pipeline"), help="run one benchmark")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="receiver servers to run (comma-separated)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 s per server, 300 events: check the harness"
    )
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--profile", action="store_true", help="profile even when targets pass")
    profile.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.events, args.warmup, args.repeats = 3.0, 300, 100, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shown = "python -m bench" + (" " + shlex.join(argv if argv is not None else sys.argv[1:]))
    admin_url = os.environ.get("TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres")
    redis_base = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
    try:
        wrk = ensure_wrk() if args.only != "pipeline" else None
    except MissingTool as e:
        say(str(e))
        return 2
    run_id = new_run_id()
    WORK.mkdir(parents=True, exist_ok=True)
    results = Results(
        argv=shown.strip(),
        started=datetime.now(UTC),
        quick=args.quick,
        duration=args.duration,
        connections=args.connections,
        threads=args.threads,
        load_before=machine.load_average(),
    )
    databases = Databases(admin_url, run_id)
    redis_space = RedisSpace(redis_base, pick_redis_db(redis_base), run_id)
    results.machine = machine.describe(admin_url, redis_space.url, wrk)
    say(f"run {run_id}: databases bench_{run_id}_*, Redis db {redis_space.db} bench-{run_id}-*")
    started = time.monotonic()
    try:
        if args.only != "pipeline":
            servers = [s.strip() for s in args.servers.split(",") if s.strip()]
            results.receiver, results.receiver_runs, results.receiver_events = run_receiver_bench(
                databases=databases,
                redis_space=redis_space,
                duration=args.duration,
                connections=args.connections,
                threads=args.threads,
                warmup=args.warmup,
                only=servers,
                repeats=args.repeats,
            )
        if args.only != "receiver":
            results.pipeline = run_pipeline_bench(
                databases=databases,
                redis_space=redis_space,
                events=args.events,
                connections=args.connections,
                repeats=args.repeats,
            )
            results.pipeline_events = pipeline_events(args.events, f"p{run_id}")
        if not args.no_profile:
            _profile(args, results, databases, redis_space)
    finally:
        databases.drop_all()
        redis_space.cleanup()
    results.finished = datetime.now(UTC)
    results.load_after = machine.load_average()
    if args.quick:
        results.notes.append("quick run: figures are indicative only")
    args.output.write_text(render(results))
    say(f"wrote {args.output} in {time.monotonic() - started:.0f} s")
    missed = False
    for target in targets(results):
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[target.passed]
        missed |= target.passed is False
        print(f"{verdict}  {target.name}: {target.measured} (goal {target.goal})")
    return 1 if (missed and args.strict) else 0


def _profile(
    args: argparse.Namespace, results: Results, databases: Databases, redis_space: RedisSpace
) -> None:
    verdicts = {t.name: t.passed for t in targets(results)}
    receiver_missed = any(
        verdicts.get(n) is False
        for n in ("receiver throughput", "receiver p99", "receiver errors", "web memory")
    )
    if results.run("ours") and (args.profile or receiver_missed):
        results.profiles.append(
            profile_server(
                "ours",
                events=results.receiver_events,
                tag=f"r{databases.run_id}",
                databases=databases,
                redis_space=redis_space,
                duration=min(args.duration, 10.0),
                connections=args.connections,
                threads=args.threads,
                warmup=args.warmup,
            )
        )
    pipeline_missed = any(
        verdicts.get(n) is False
        for n in ("pipeline throughput", "pipeline p99 at half load", "worker memory")
    )
    pipe = results.pipeline
    drain = pipe.phase("drain") if pipe else None
    if drain and worker_available() and (args.profile or pipeline_missed):
        seconds = min(20.0, max(3.0, drain.wall_s))
        results.profiles.append(
            profile_workers(
                results.pipeline_events,
                f"evt_p{databases.run_id}_",
                databases=databases,
                redis_space=redis_space,
                connections=args.connections,
                seconds=seconds,
            )
        )
