"""Receiver benchmark: bare Starlette, the straightforward receiver and ours, each one uvicorn
process under the same wrk load (bench/wrk_requests.lua), alternating; then the durability
checks of each run."""

from __future__ import annotations

import random
import resource
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson
import psycopg
import redis

from bench.events import BenchEvent, generate, signed_requests, write_wrk_files
from bench.sender import send
from bench.space import WORK, Options, Space, say
from bench.system import CpuShare, Memory, Snapshot, cpu_since, peak_memory, settle
from shared.broker import QUEUE_NAME, message_event_ids
from tests.databases import ADMIN_URL
from tests.procs import free_port, run_server

UVICORN = [
    sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--log-level", "warning",
    "--no-access-log",
]  # fmt: skip
SERVERS = {  # what each runs, on the port in $PORT (ours) or after --port
    "bare": [*UVICORN, "bench.servers.bare:app"],
    "straightforward": [*UVICORN, "--factory", "bench.servers.straightforward:create_app"],
    "ours": [sys.executable, "-m", "ingest"],
}
LUA = Path(__file__).with_name("wrk_requests.lua")
# Distinct events prepared per second of wrk: above the fastest rate ours reached here (about
# 7,000 req/s). A run that goes past them sends events again, and the durability check says so.
EVENTS_PER_SECOND = 11_000
STORED = "SELECT id FROM stripe_events WHERE id LIKE %s"
PAYLOADS = "SELECT id, payload FROM stripe_events WHERE id = ANY(%s)"


def ensure_wrk() -> str:
    if found := shutil.which("wrk"):
        return found
    raise FileNotFoundError("wrk is not installed; install it with: apt-get install -y wrk")


@dataclass
class Wrk:
    command: str
    stdout: str
    cpu_s: float  # wrk's own CPU seconds, loading its request files included
    counts: dict[str, float] = field(default_factory=dict)  # summed over its threads
    ok_ids: list[str] = field(default_factory=list)

    def n(self, key: str) -> int:
        """requests, ok, non_2xx, socket_errors, total (prepared), past (the prepared)."""
        return int(self.counts.get(key, 0))

    def ms(self, latency: str) -> float | None:
        """p50, p90, p99, p99.9 or max."""
        return self.counts.get(f"latency_{latency}")

    @property
    def rps(self) -> float:
        return self.n("requests") / self.counts["duration_us"] * 1e6


def run_wrk(port: int, requests: Path, opts: Options) -> Wrk:
    """wrk against our URL on `port`, each thread sending its file in `requests`."""
    (out := requests / "wrk.out").unlink(missing_ok=True)
    argv = [
        ensure_wrk(), f"-t{opts.threads}", f"-c{opts.connections}", f"-d{round(opts.duration)}s",
        "--timeout=10s", "--latency", "-s", str(LUA), f"http://127.0.0.1:{port}/webhooks/stripe",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    files = [*argv, "--", str(requests), str(out)]
    done = subprocess.run(files, capture_output=True, text=True, timeout=opts.duration + 120)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shown = " ".join(["wrk", *argv[1:]]).replace(str(LUA), "bench/wrk_requests.lua")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result = Wrk(shown, done.stdout, cpu)
    for key, _, value in (line.partition(" ") for line in out.read_text().splitlines()):
        if key == "ok_id":
            result.ok_ids.append(value)
        else:
            result.counts[key] = result.counts.get(key, 0.0) + float(value)
    return result


class Check(NamedTuple):
    name: str
    passed: bool
    detail: str


@dataclass
class ServerRun:
    name: str
    repeat: int  # which of the server's runs (they alternate with the other servers')
    command: str
    wrk: Wrk
    memory: Memory
    cpu: CpuShare
    checks: list[Check] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return all(c.passed for c in self.checks)


def enqueued_ids(redis_url: str, namespace: str) -> list[str]:
    """Event ids of the messages held for our queue (waiting, in flight, or delayed)."""
    keys = (f"{namespace}:{QUEUE_NAME}.msgs", f"{namespace}:{QUEUE_NAME}.DQ.msgs")
    with redis.Redis.from_url(redis_url) as client:
        messages = [orjson.loads(raw) for key in keys for raw in client.hvals(key)]
    return [i for m in messages for i in message_event_ids(m["actor_name"], m["args"])]


# Checked after each run against the server's own database and namespace.
CHECKS = {
    "every 200 stored": "{answered} ids answered 200 (wrk counted {ok}), {missing} missing",
    "distinct events": "{past} requests past the prepared {total}, {twice} ids answered 200 twice",
    "stored once, nothing else": "{rows} rows; {unanswered} stored but unanswered when wrk "
    "stopped (at most {inflight} in flight)",
    "payload as sent": "{sampled} sampled rows compared with their bodies, {differ} differ",
    "every stored event enqueued once": "{messages} messages for {ids} ids; {not_enqueued} stored "
    "ids not enqueued, {not_stored} enqueued ids not stored",
}


def durability_checks(
    wrk: Wrk, events: Sequence[BenchEvent], prefix: str, url: str, queued: list[str], inflight: int
) -> list[Check]:
    ok_ids = [i for i in wrk.ok_ids if i.startswith(prefix)]
    sample = random.Random(3).sample(ok_ids, min(200, len(ok_ids)))
    with psycopg.connect(url) as conn:
        stored = [r[0] for r in conn.execute(STORED, (f"{prefix}%",))]
        rows = conn.execute(PAYLOADS, (sample,)).fetchall()
    enqueued = [i for i in queued if i.startswith(prefix)]
    ok_set, stored_set, enqueued_set = set(ok_ids), set(stored), set(enqueued)
    bodies = {e.id: e.body for e in events}
    n = dict(
        answered=len(ok_ids), ok=wrk.n("ok"), missing=len(ok_set - stored_set), inflight=inflight,
        past=wrk.n("past"), total=wrk.n("total"), twice=len(ok_ids) - len(ok_set), rows=len(stored),
        unanswered=len(stored_set - ok_set), sampled=len(sample), messages=len(enqueued),
        differ=sum(r[1] != orjson.loads(bodies[r[0]]) for r in rows), ids=len(enqueued_set),
        not_enqueued=len(stored_set - enqueued_set), not_stored=len(enqueued_set - stored_set),
    )  # fmt: skip
    passed = (
        n["missing"] == 0 and n["answered"] == n["ok"],
        n["past"] == 0 and n["twice"] == 0,
        stored_set <= bodies.keys()
        and n["rows"] == len(stored_set)
        and n["unanswered"] <= inflight,
        n["differ"] == 0 and len(rows) == len(sample),
        enqueued_set == stored_set and n["messages"] == n["ids"],
    )
    return [Check(c, ok, d.format(**n)) for (c, d), ok in zip(CHECKS.items(), passed, strict=True)]


def run_once(
    name: str, repeat: int, events: Sequence[BenchEvent], space: Space, opts: Options
) -> ServerRun:
    """One run of server `name` in a database and namespace of its own (bare: none)."""
    label, port, workdir = f"{name}_{repeat}", free_port(), WORK / "receiver" / name
    url = space.database(f"recv_{label}") if name != "bare" else ADMIN_URL
    namespace = space.namespace(f"recv-{label}")
    argv = SERVERS[name] + (["--port", str(port)] if name != "ours" else [])
    command = " ".join(argv).replace(sys.executable, "python")
    write_wrk_files(events, workdir, opts.threads)  # before settling: on disk before the clock
    say(f"receiver/{name}: starting {command}")
    try:
        env = {**space.env(url, namespace), "PORT": str(port)}
        with run_server(name, argv, env, port, stop_timeout=20) as proc:
            say(f"receiver/{name}: settled for {settle():.1f}s (CHECKPOINT, sync, machine quiet)")
            warm = signed_requests(generate(opts.warmup, tag=f"warm{name}", seed=11))
            if (warmed := send(port, warm, connections=32).ok) != opts.warmup:
                say(f"warm-up: {warmed}/{opts.warmup} answered 200")
            before = Snapshot()
            wrk = run_wrk(port, workdir, opts)
            cpu = cpu_since(before, {name: proc.pid}, wrk=wrk.cpu_s)
            memory = peak_memory(proc.pid)
            proc.stop(timeout=20)  # graceful: requests in flight finish, ours flushes its enqueues
        shown = f"PORT={port} STRIPE_WEBHOOK_SECRET=whsec_bench_... DATABASE_URL=<fresh db> "
        shown += f"REDIS_URL={space.redis_url} REDIS_NAMESPACE={namespace} {command}"
        run = ServerRun(name, repeat, shown, wrk, memory, cpu)
        say(f"receiver/{name}: {wrk.rps:,.0f} req/s, p99 {wrk.ms('p99')} ms")
        if name != "bare":
            queued = enqueued_ids(space.redis_url, namespace)
            prefix = f"evt_r{space.run_id}_"
            run.checks = durability_checks(wrk, events, prefix, url, queued, opts.connections)
            for check in run.checks:
                say(f"receiver/{name}:", "ok" if check.passed else "FAIL", check.name, check.detail)
        return run
    finally:
        if name != "bare":
            space.drop(url)


def run_receiver_bench(space: Space, opts: Options) -> tuple[list[ServerRun], list[BenchEvent]]:
    """Each server `repeats` times (bare, the ceiling, once), alternating: every run, the events."""
    count = max(5_000, int(opts.duration * EVENTS_PER_SECOND))
    say(f"generating {count:,} events for the receiver runs")
    events = generate(count, tag=f"r{space.run_id}")
    order = [(s, i) for i in range(1, opts.repeats + 1) for s in SERVERS if s != "bare" or i == 1]
    return [run_once(s, i, events, space, opts) for s, i in order], events
