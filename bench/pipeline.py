"""Pipeline benchmark: events posted through our receiver and finished by our workers (ordering and
the billing mirror on), against a trivial Dramatiq actor doing one UPDATE per message, in the
PHASES below, each in a fresh database and Redis namespace."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.events import BenchEvent, generate, signed_requests
from bench.sender import Sent, send
from bench.space import WORKER_PROCESSES, Options, Space, say
from bench.system import CpuShare, Memory, Snapshot, cpu_since, peak_memory, settle
from shared.broker import enqueue_events, make_broker
from shared.settings import Settings
from tests.procs import Running, free_port, run_process, run_server, run_sweeper, run_worker

THREADS = Settings().worker_threads
WEB = [sys.executable, "-m", "ingest"]
TRIVIAL = [
    sys.executable, "-m", "dramatiq", "bench.servers.trivial_actor",
    "--processes", str(WORKER_PROCESSES), "--threads", str(THREADS),
]  # fmt: skip
COMMANDS = {
    "web": "python -m ingest",
    "worker": f"python -m worker  (WORKER_PROCESSES={WORKER_PROCESSES})",
    "trivial": " ".join(["python", *TRIVIAL[1:]]),
}
HALF_LOAD_MAX_S = 30
PHASES = {
    "drain": "all events stored through the receiver while no worker runs, then the workers "
    "start: the workers' own throughput, comparable with the trivial actor.",
    "trivial": "a copy of the drain database taken before the workers ran and the same ids "
    "enqueued, finished by `bench/servers/trivial_actor.py` (one UPDATE per message, same "
    "processes and threads).",
    "full": "workers running, events posted as fast as 32 connections go.",
    "half": "posted open-loop at half of the full-load events/s.",
}
MIRROR_TABLES = ("customers", "subscriptions", "invoices", "charges", "disputes")
# events/s and latency from the rows' own timestamps (one clock: PostgreSQL's). `since`: seconds
# from the first finish, for the 50/90/99/100% timeline.
MEASURE = """
SELECT count(*) AS n, extract(epoch FROM max(processed_at) - min(processed_at)) AS finishing,
       extract(epoch FROM max(processed_at) - min(received_at)) AS from_receipt,
       percentile_cont(ARRAY[0.5, 0.99, 1.0]) WITHIN GROUP (ORDER BY lat) AS latency,
       percentile_cont(ARRAY[0.5, 0.9, 0.99, 1.0]) WITHIN GROUP (ORDER BY since) AS timeline
FROM (SELECT received_at, processed_at,
             extract(epoch FROM processed_at - min(processed_at) OVER ()) AS since,
             extract(epoch FROM processed_at - received_at) * 1000 AS lat
      FROM stripe_events WHERE id LIKE %(prefix)s AND processed_at IS NOT NULL) s
"""
# Finished events whose process_seq is below that of an earlier event of their key.
ORDER_VIOLATIONS = """
SELECT count(*) FROM (
  SELECT process_seq, max(process_seq) OVER (
           PARTITION BY ordering_key ORDER BY created, received_at, id
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
  FROM stripe_events WHERE id LIKE %(prefix)s AND status IN ('processed', 'ignored')) s
WHERE process_seq < before
"""
STATUSES = "SELECT status, count(*) FROM stripe_events WHERE id LIKE %(prefix)s GROUP BY 1"
MIRROR = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in MIRROR_TABLES)


@dataclass
class Phase:
    name: str
    events: int
    repeat: int = 1  # drain and trivial run several times, alternating
    offered_rate: float | None = None
    send: Sent | None = None
    finished: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    events_per_s: float = 0.0
    wall_s: float = 0.0
    latency_ms: tuple[float, ...] = ()  # p50, p99, max; receipt to finished (full, half)
    finish_timeline_s: tuple[float, ...] = ()  # 50/90/99/100% finished after the first finish
    order_violations: int | None = None
    mirror_rows: dict[str, int] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)  # web, worker: peak of each tree
    cpu: CpuShare | None = None
    cpu_events: int = 0  # finished inside the CPU window (drain, trivial: from the first finish)
    timed_out: bool = False
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} {self.repeat}" if self.name in ("drain", "trivial") else self.name


@dataclass
class Pipeline:
    space: Space
    opts: Options
    events: list[BenchEvent]
    phases: list[Phase] = field(default_factory=list)

    def query(self, url: str, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            return conn.execute(statement, {"prefix": f"evt_p{self.space.run_id}_%"}).fetchall()

    def statuses(self, url: str) -> dict[str, int]:
        return dict(self.query(url, STATUSES))

    def wait_finished(self, url: str, count: int, procs: Sequence[Running]) -> bool:
        """Until `count` events are finished (False after the timeout); fails if a process dies."""
        deadline = time.monotonic() + max(120.0, self.opts.events / 20)
        while time.monotonic() < deadline:
            if dead := [p for p in procs if not p.alive()]:
                raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].logs()[-4000:]}")
            if sum(n for k, n in self.statuses(url).items() if k != "pending") >= count:
                return True
            time.sleep(0.1)
        return False

    def measure(self, phase: Phase, url: str, *, from_receipt: bool) -> None:
        (n, finishing, receipt, latency, timeline), *_ = self.query(url, MEASURE)
        phase.finished, phase.statuses = n, self.statuses(url)
        # `n` finishes spread over the span; from receipt the first event also counts.
        span, finishes = (receipt, n) if from_receipt else (finishing, n - 1)
        phase.events_per_s = finishes / float(span) if span else 0.0
        phase.finish_timeline_s = tuple(timeline or ())
        phase.latency_ms = tuple(latency or ()) if from_receipt else ()
        if phase.name != "trivial":
            phase.mirror_rows = dict(zip(MIRROR_TABLES, self.query(url, MIRROR)[0], strict=True))
        say(f"pipeline/{phase.label}: {phase.events_per_s:,.0f} events/s, {phase.statuses}")

    def post(self, port: int, events: Sequence[BenchEvent], rate: float | None) -> Sent:
        sent = send(port, signed_requests(events), connections=self.opts.connections, rate=rate)
        if sent.ok != len(events):
            say(f"pipeline: {sent.ok}/{len(events)} answered 200;", sent.statuses, sent.errors)
        return sent

    def drain(self, phase: Phase, url: str, proc: Running) -> None:
        """Wait for the backlog; CPU counted from the first finish (start-up left out)."""
        started = time.monotonic()
        self.wait_finished(url, 1, [proc])
        phase.cpu_events = self.statuses(url).get("pending", 0)
        before = Snapshot()
        phase.timed_out = not self.wait_finished(url, phase.events, [proc])
        phase.cpu = cpu_since(before, {"workers": proc.pid})
        phase.wall_s = time.monotonic() - started
        phase.memory["worker"] = peak_memory(proc.pid)
        self.measure(phase, url, from_receipt=False)

    def drain_and_trivial(self, repeat: int) -> None:
        """Events stored through the receiver; the workers drain them; the trivial actor drains
        a copy of the same rows."""
        drain = Phase("drain", len(self.events), repeat)
        url = self.space.database(f"pipe_drain_{repeat}")
        env, port = self.space.env(url, self.space.namespace(f"pipe-drain-{repeat}")), free_port()
        with run_server("web", WEB, {**env, "PORT": str(port)}, port, stop_timeout=20) as web:
            drain.send = self.post(port, self.events, None)
            drain.memory["web"] = peak_memory(web.pid)
        trivial_url = self.space.database(f"pipe_trivial_{repeat}", like=url)
        settle()
        with (
            run_worker(env, WORKER_PROCESSES, THREADS, wait_ready=False, stop_timeout=20) as worker,
            run_sweeper(env),
        ):
            self.drain(drain, url, worker)
        drain.order_violations = self.query(url, ORDER_VIOLATIONS)[0][0]
        self.phases.append(drain)
        self.space.drop(url)
        settle()
        namespace = self.space.namespace(f"pipe-trivial-{repeat}")
        settings = Settings(redis_url=self.space.redis_url, redis_namespace=namespace)
        with closing(make_broker(settings)) as broker:
            enqueue_events(broker, [e.id for e in self.events])
        trivial = Phase("trivial", len(self.events), repeat)
        env = self.space.env(trivial_url, namespace)
        with run_process("trivial", TRIVIAL, env, stop_timeout=20) as proc:
            self.drain(trivial, trivial_url, proc)
        self.phases.append(trivial)
        self.space.drop(trivial_url)

    def live(self, name: str, events: Sequence[BenchEvent], rate: float | None) -> Phase:
        """Workers running, `events` posted (at `rate` per second, or as fast as they go)."""
        phase = Phase(name, len(events), offered_rate=rate)
        url = self.space.database(f"pipe_{name}")
        env, port = self.space.env(url, self.space.namespace(f"pipe-{name}")), free_port()
        settle()
        with (
            run_worker(env, WORKER_PROCESSES, THREADS, stop_timeout=20) as worker,
            run_sweeper(env),
            run_server("web", WEB, {**env, "PORT": str(port)}, port, stop_timeout=20) as web,
        ):
            pace = f"at {rate:,.0f}/s" if rate else "as fast as they go"
            say(f"pipeline/{name}: posting {len(events)} events {pace}")
            before = Snapshot()
            phase.send = self.post(port, events, rate)
            phase.timed_out = not self.wait_finished(url, len(events), [worker, web])
            phase.cpu = cpu_since(before, {"web": web.pid, "workers": worker.pid})
            phase.wall_s = phase.cpu.wall
            phase.memory = {"web": peak_memory(web.pid), "worker": peak_memory(worker.pid)}
        self.measure(phase, url, from_receipt=True)
        self.phases.append(phase)
        self.space.drop(url)
        return phase

    def phase(self, name: str) -> Phase:
        """The phase, or for a repeated one its median run by events/s."""
        runs = sorted((p for p in self.phases if p.name == name), key=lambda p: p.events_per_s)
        return runs[(len(runs) - 1) // 2]


def run_pipeline_bench(space: Space, opts: Options) -> Pipeline:
    """Drain and trivial alternating `repeats` times, then full load, then half of it."""
    pipe = Pipeline(space, opts, generate(opts.events, tag=f"p{space.run_id}", seed=23))
    for repeat in range(1, opts.repeats + 1):
        pipe.drain_and_trivial(repeat)
    rate = max(1.0, pipe.live("full", pipe.events, None).events_per_s / 2)
    count = max(100, min(opts.events, int(rate * HALF_LOAD_MAX_S)))
    half = pipe.live("half", pipe.events[:count], rate)
    if count < opts.events:
        half.note = (
            f"{count} of the {opts.events} events, to keep this phase under {HALF_LOAD_MAX_S} s"
        )
    return pipe
