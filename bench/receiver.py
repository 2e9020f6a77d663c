"""Receiver benchmark: bare Starlette, the straightforward receiver and ours, one after another,
each one uvicorn process under the same wrk load; then the durability check for each."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg

from bench import cpu
from bench.cpu import CpuShare
from bench.events import BenchEvent, generate, signed_requests
from bench.events import write_wrk_files as write_requests
from bench.infra import (
    WORK,
    Databases,
    Memory,
    Proc,
    RedisSpace,
    free_port,
    process_env,
    procfile_command,
    say,
    wait_http,
    watch_memory,
)
from bench.profile import Profile, Recorder
from bench.sender import send
from bench.tools import WrkResult, run_wrk
from shared.broker import QUEUE_NAME

SECRET = "whsec_bench_0123456789abcdef"
SERVERS = ("bare", "straightforward", "ours")


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class ServerRun:
    name: str
    command: str
    wrk: WrkResult
    memory: Memory
    checks: list[Check] = field(default_factory=list)
    stored: int | None = None
    enqueued: int | None = None
    pid: int = 0
    cpu: CpuShare | None = None
    profile: Profile | None = None
    # Which of the server's runs this is (1, 2, ...), they alternate with the other servers'.
    repeat: int = 1

    @property
    def durable(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass
class ServerSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    database_url: str | None
    namespace: str | None


def server_argv(name: str, port: int) -> list[str]:
    uvicorn = ["python", "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)]
    quiet = ["--no-access-log", "--log-level", "warning"]
    if name == "bare":
        return [*uvicorn, *quiet, "bench.servers.bare:app"]
    if name == "straightforward":
        return [*uvicorn, *quiet, "--factory", "bench.servers.straightforward:create_app"]
    return procfile_command("web")


def start_server(spec: ServerSpec, port: int, workdir: Path) -> Proc:
    proc = Proc(spec.name, spec.argv, spec.env, workdir)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


def warm_up(port: int, count: int, tag: str) -> None:
    """Open pools, prepare statements, fill caches: events of their own, not counted."""
    warm = generate(count, tag=tag, seed=11)
    result = send("127.0.0.1", port, signed_requests(warm, SECRET), connections=32)
    if result.errors or result.ok != count:
        say(f"warm-up: {result.ok}/{count} answered 200, statuses {result.statuses}")


def stored_ids(database_url: str, prefix: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id FROM stripe_events WHERE id LIKE %s", (prefix + "%",)
        ).fetchall()
    return [str(r[0]) for r in rows]


def wait_enqueued(
    redis_space: RedisSpace, namespace: str, expect: int, timeout: float = 20.0
) -> list[str]:
    """The enqueued ids once they reach `expect` or stop changing for 2 s."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        ids = redis_space.enqueued_ids(namespace, QUEUE_NAME)
        if len(ids) >= expect or time.monotonic() > deadline:
            return ids
        if len(ids) != last:
            last, since = len(ids), time.monotonic()
        elif time.monotonic() - since > 2.0:
            return ids
        time.sleep(0.2)


def durability_checks(
    run: ServerRun,
    events: Sequence[BenchEvent],
    tag: str,
    database_url: str,
    redis_space: RedisSpace,
    namespace: str,
    connections: int,
) -> None:
    prefix = f"evt_{tag}_"
    ok_ids = [i for i in run.wrk.ok_ids if i.startswith(prefix)]
    stored = stored_ids(database_url, prefix)
    stored_set = set(stored)
    run.stored = len(stored)
    missing = [i for i in ok_ids if i not in stored_set]
    run.checks.append(
        Check(
            "every 200 stored",
            not missing and len(ok_ids) == run.wrk.ok,
            f"{len(ok_ids)} ids answered 200 (wrk counted {run.wrk.ok}), {len(missing)} missing",
        )
    )
    repeats = len(ok_ids) - len(set(ok_ids))
    run.checks.append(
        Check(
            "distinct events",
            run.wrk.wraps == 0 and repeats == 0,
            f"{run.wrk.wraps} requests past the prepared {run.wrk.total_prepared}, "
            f"{repeats} ids answered 200 twice",
        )
    )
    generated = {e.id for e in events}
    extra = stored_set - generated
    unanswered = len(stored_set) - len(set(ok_ids) & stored_set)
    run.checks.append(
        Check(
            "stored once, nothing else",
            not extra and len(stored) == len(stored_set) and unanswered <= connections,
            f"{len(stored)} rows; {unanswered} stored but unanswered when wrk stopped "
            f"(at most {connections} in flight)",
        )
    )
    by_id = {e.id: e for e in events}
    sample = random.Random(3).sample(ok_ids, min(200, len(ok_ids)))
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, payload FROM stripe_events WHERE id = ANY(%s)", (sample,)
        ).fetchall()
    mismatched = [r[0] for r in rows if r[1] != orjson.loads(by_id[r[0]].body)]
    run.checks.append(
        Check(
            "payload as sent",
            not mismatched and len(rows) == len(sample),
            f"{len(sample)} sampled rows compared with their bodies, {len(mismatched)} differ",
        )
    )
    enqueued = [
        i for i in wait_enqueued(redis_space, namespace, len(stored)) if i.startswith(prefix)
    ]
    run.enqueued = len(enqueued)
    enqueued_set = set(enqueued)
    run.checks.append(
        Check(
            "every stored event enqueued once",
            enqueued_set == stored_set and len(enqueued) == len(enqueued_set),
            f"{len(enqueued)} messages for {len(enqueued_set)} ids; "
            f"{len(stored_set - enqueued_set)} stored ids not enqueued, "
            f"{len(enqueued_set - stored_set)} enqueued ids not stored",
        )
    )


def run_server(
    name: str,
    *,
    events: Sequence[BenchEvent],
    tag: str,
    databases: Databases,
    redis_space: RedisSpace,
    duration: float,
    connections: int,
    threads: int,
    warmup: int,
    extra_env: dict[str, str],
    profile_out: Path | None = None,
    repeat: int = 1,
) -> ServerRun:
    workdir = WORK / "receiver" / name
    port = free_port()
    label = name if repeat == 1 else f"{name}_{repeat}"
    database_url = databases.fresh(f"recv_{label}") if name != "bare" else None
    namespace = redis_space.namespace(f"recv-{label}")
    env = process_env(
        {
            **extra_env,
            "PORT": str(port),
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "REDIS_URL": redis_space.url,
            "REDIS_NAMESPACE": namespace,
            "DATABASE_URL": database_url or databases.admin_url,
        }
    )
    argv = server_argv(name, port)
    say(f"receiver/{name}: starting {' '.join(argv)}")
    proc = start_server(ServerSpec(name, argv, env, database_url, namespace), port, workdir)
    try:
        waited = databases.settle()
        say(f"receiver/{name}: settled for {waited:.1f}s (CHECKPOINT, machine quiet)")
        warm_up(port, warmup, f"warm{name}")
        files, _ = write_requests(events, SECRET, workdir / "requests", threads)
        del files
        say(f"receiver/{name}: wrk {duration:.0f}s, {connections} connections")
        recorder = None
        if profile_out is not None:
            recorder = Recorder(
                f"receiver: {name}", proc.pid, duration, profile_out, subprocesses=False
            )
        with watch_memory(proc.pid) as memory:
            before, started = cpu.snapshot(), time.monotonic()
            result = run_wrk(
                f"http://127.0.0.1:{port}/webhooks/stripe",
                workdir / "requests",
                workdir / "wrk.out",
                threads=threads,
                connections=connections,
                duration=duration,
            )
            used = cpu.share(before, cpu.snapshot(), time.monotonic() - started, {name: [proc.pid]})
            # wrk exited before the snapshot: its own accounting (includes loading its files).
            used.seconds["wrk"] = used.seconds.get("wrk", 0.0) + result.cpu_s
            left = used.seconds.get("unattributed", 0.0) - result.cpu_s
            used.seconds["unattributed"] = max(0.0, left)
        shown = f"PORT={port} STRIPE_WEBHOOK_SECRET=whsec_bench_... DATABASE_URL=<fresh db> "
        shown += f"REDIS_URL={redis_space.url} REDIS_NAMESPACE={namespace} {' '.join(argv)}"
        run = ServerRun(name, shown, result, memory, pid=proc.pid, cpu=used)
        if recorder is not None:
            run.profile = recorder.finish()
            return run
        p50, p99 = result.latency_us.get("p50", 0) / 1000, result.latency_us.get("p99", 0) / 1000
        say(
            f"receiver/{name}: {result.rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"non-2xx {result.non_2xx}"
        )
        # A graceful stop lets the requests still in flight finish (and ours flush its enqueues),
        # so the checks see the final state.
        _stop(proc, name)
        if database_url is not None and name != "bare":
            durability_checks(run, events, tag, database_url, redis_space, namespace, connections)
            for check in run.checks:
                verdict = "ok  " if check.passed else "FAIL"
                say(f"receiver/{name}: {verdict} {check.name}: {check.detail}")
        return run
    finally:
        if proc.alive():
            _stop(proc, name)
        if database_url is not None:
            databases.drop(database_url)


def _stop(proc: Proc, name: str) -> None:
    code = proc.stop()
    if code not in (0, None, -15):
        say(f"receiver/{name}: exited with {code}; log {proc.log_path}")


# Distinct events prepared per second of wrk: above the fastest rate ours reached here (about
# 7,000 req/s). A run that goes past them would send events again (answered as duplicates), and
# the durability check says so.
EVENTS_PER_SECOND = 11_000


def receiver_events(
    duration: float, tag: str, per_second: int = EVENTS_PER_SECOND
) -> list[BenchEvent]:
    count = max(5_000, int(duration * per_second))
    say(f"generating {count:,} signed-ready events for the receiver runs")
    return generate(count, tag=tag)


def run_receiver_bench(
    *,
    databases: Databases,
    redis_space: RedisSpace,
    duration: float,
    connections: int,
    threads: int,
    warmup: int,
    only: Sequence[str] = SERVERS,
    repeats: int = 3,
) -> tuple[list[ServerRun], list[ServerRun], list[BenchEvent]]:
    """Each server `repeats` times (bare, the ceiling, once), the servers alternating, each run
    from a quiet machine. Returns each server's median run by requests/s, every run, and the
    events."""
    tag = f"r{databases.run_id}"
    events = receiver_events(duration, tag)
    runs: list[ServerRun] = []
    for repeat in range(1, max(1, repeats) + 1):
        for name in only:
            if name == "bare" and repeat > 1:
                continue
            run = run_server(
                name,
                events=events,
                tag=tag,
                databases=databases,
                redis_space=redis_space,
                duration=duration,
                connections=connections,
                threads=threads,
                warmup=warmup,
                extra_env={},
                repeat=repeat,
            )
            run.repeat = repeat
            runs.append(run)
    medians = []
    for name in only:
        mine = sorted((r for r in runs if r.name == name), key=lambda r: r.wrk.rps)
        if mine:
            medians.append(mine[(len(mine) - 1) // 2])
    return medians, runs, events


def profile_server(
    name: str,
    *,
    events: Sequence[BenchEvent],
    tag: str,
    databases: Databases,
    redis_space: RedisSpace,
    duration: float,
    connections: int,
    threads: int,
    warmup: int,
) -> Profile:
    """The same load once more, with py-spy recording the server."""
    say(f"receiver/{name}: profiling with py-spy for {duration:.0f}s")
    run = run_server(
        name,
        events=events,
        tag=tag,
        databases=databases,
        redis_space=redis_space,
        duration=duration,
        connections=connections,
        threads=threads,
        warmup=warmup,
        extra_env={},
        profile_out=WORK / "profiles" / f"receiver-{name}.txt",
        repeat=0,  # a database and namespace of its own
    )
    assert run.profile is not None
    return run.profile
