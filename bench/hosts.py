"""Many hosts: two web processes, three worker supervisors and a sweeper, each started as its own
host would start it (its own process group and environment), on one PostgreSQL database and one
Redis namespace. A storm of signed events with duplicates goes to both webs; then every event
must have finished once, in creation order per key. Then the pipeline's throughput for 1, 2, 4
and 8 worker processes (`WORKER_PROCESSES` of one supervisor), each with the same requests."""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.events import BenchEvent, generate, signed_requests
from bench.sender import Sent, send
from bench.space import Options, Space, say
from bench.system import CpuShare, Snapshot, cpu_since, settle
from tests.procs import Running, free_port, run_server, run_sweeper, run_worker

WEBS, SUPERVISORS, PROCESSES_EACH, THREADS = 2, 3, 2, 4
SCALE = (1, 2, 4, 8)
DUPLICATE_SHARE = 0.3
OVERTAKING_MARGIN_S = 1.0  # as tests/reliability/test_storm.py: an intake commit in flight
# Pairs of one key where the later-created event finished first although the earlier one had been
# stored OVERTAKING_MARGIN_S before the later one started (the contract's ordering promise).
OVERTAKEN = """
WITH started AS (
    SELECT e.id, e.ordering_key, e.created, e.received_at, e.process_seq,
           (SELECT max(a.started_at) FROM event_attempts a WHERE a.event_id = e.id) AS started_at
    FROM stripe_events e WHERE e.status IN ('processed', 'ignored')
)
SELECT count(*) FROM started a JOIN started b
  ON a.ordering_key = b.ordering_key
 AND (a.created, a.received_at, a.id) < (b.created, b.received_at, b.id)
WHERE a.process_seq > b.process_seq AND a.received_at + make_interval(secs => %(margin)s)
      < b.started_at
"""
# Effects counted more than once: an event with other than exactly one attempt (every one
# succeeds here), finished twice, or a notification sent more than once.
DUPLICATES = """
SELECT (SELECT count(*) FROM (SELECT event_id FROM event_attempts GROUP BY 1
                              HAVING count(*) > 1) d),
       (SELECT count(*) FROM stripe_events WHERE attempts > 1),
       (SELECT count(*) FROM notifications WHERE attempts > 1),
       (SELECT count(*) FROM notifications),
       (SELECT count(DISTINCT worker) FROM event_attempts)
"""
COUNTS = """
SELECT count(*) FILTER (WHERE status <> 'pending'), count(*),
       extract(epoch FROM max(processed_at) - min(received_at)),
       (SELECT count(*) FROM notifications WHERE sent_at IS NULL)
FROM stripe_events
"""


@dataclass
class HostsRun:
    """One run of the many-hosts stack over the same requests."""

    label: str
    worker_processes: int
    supervisors: int
    events: int
    requests: int
    send: list[Sent] = field(default_factory=list)
    finished: int = 0
    stored: int = 0
    events_per_s: float = 0.0  # first receipt to last finish
    overtaken: int | None = None
    duplicate_attempts: int = 0
    multi_attempt_events: int = 0
    resent_notifications: int = 0
    notifications: int = 0
    unsent: int = 0
    worker_ids: int = 0  # distinct `event_attempts.worker` (host:pid) that finished events
    cpu: CpuShare | None = None
    timed_out: bool = False

    @property
    def answered(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for s in self.send:
            for status, n in s.statuses.items():
                total[status] = total.get(status, 0) + n
        return total

    @property
    def duplicates(self) -> int:
        return self.duplicate_attempts + self.multi_attempt_events + self.resent_notifications


@dataclass
class Hosts:
    events: list[BenchEvent]
    requests: list[BenchEvent]  # events and their duplicates, shuffled
    runs: list[HostsRun] = field(default_factory=list)

    @property
    def storm(self) -> HostsRun:
        return self.runs[0]

    @property
    def scale(self) -> list[HostsRun]:
        return self.runs[1:]


@contextlib.contextmanager
def stack(
    env: dict[str, str], supervisors: Sequence[int]
) -> Iterator[tuple[list[Running], list[int]]]:
    """Web processes, one supervisor per entry of `supervisors` (its WORKER_PROCESSES) and a
    sweeper, each a process group of its own (tests/procs.py starts every one in a new session)
    with its own environment: port, metrics port."""
    with contextlib.ExitStack() as running:
        procs, ports = [], []
        for n in supervisors:
            host = {k: v for k, v in env.items() if k != "WORKER_PROCESSES"}
            procs.append(running.enter_context(run_worker(host, n, THREADS, stop_timeout=20)))
        procs.append(running.enter_context(run_sweeper(env)))
        for i in range(WEBS):
            port, argv = free_port(), [sys.executable, "-m", "ingest"]
            web_env = {**env, "PORT": str(port)}
            ports.append(port)
            procs.append(
                running.enter_context(run_server(f"web{i}", argv, web_env, port, stop_timeout=20))
            )
        yield procs, ports


def _post(ports: Sequence[int], requests: Sequence[BenchEvent], connections: int) -> list[Sent]:
    """Every request once, split round-robin across the web processes, all sent at once."""
    shares = [signed_requests(requests[i :: len(ports)]) for i in range(len(ports))]
    each = max(1, connections // len(ports))
    with ThreadPoolExecutor(len(ports)) as pool:
        return list(pool.map(lambda p, r: send(p, r, connections=each), ports, shares))


def _query(url: str, statement: str, params: dict[str, Any] | None = None) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(statement, params).fetchone()
    assert row is not None
    return tuple(row)


def run_once(
    space: Space, opts: Options, hosts: Hosts, label: str, supervisors: Sequence[int]
) -> HostsRun:
    run = HostsRun(
        label, sum(supervisors), len(supervisors), len(hosts.events), len(hosts.requests)
    )
    url = space.database(f"hosts_{label}")
    env = space.env(url, space.namespace(f"hosts-{label}"))
    settle()
    with stack(env, supervisors) as (procs, ports):
        say(f"hosts/{label}: {len(hosts.requests)} requests to {len(ports)} webs, {supervisors}")
        before = Snapshot()
        run.send = _post(ports, hosts.requests, opts.connections)
        deadline = time.monotonic() + max(120.0, len(hosts.events) / 20)
        while time.monotonic() < deadline:
            if dead := [p for p in procs if not p.alive()]:
                raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].logs()[-4000:]}")
            # Not the notifications: one that awaits its charge's event stays unsent by design.
            if _query(url, COUNTS)[0] >= len(hosts.events):
                break
            time.sleep(0.2)
        else:
            run.timed_out = True
        groups = {p.name if p.name.startswith("web") else f"{p.name}{i}": p.pid
                  for i, p in enumerate(procs)}  # fmt: skip
        cpu = cpu_since(before, groups)
        run.cpu = _merge(cpu)
    run.finished, run.stored, span, run.unsent = _query(url, COUNTS)
    run.events_per_s = run.finished / float(span) if span else 0.0
    run.overtaken = _query(url, OVERTAKEN, {"margin": OVERTAKING_MARGIN_S})[0]
    dup = _query(url, DUPLICATES)
    run.duplicate_attempts, run.multi_attempt_events, run.resent_notifications = dup[:3]
    run.notifications, run.worker_ids = dup[3:5]
    space.drop(url)
    say(
        f"hosts/{label}: {run.events_per_s:,.0f} events/s, {run.finished}/{run.events} finished, "
        f"{run.overtaken} overtaken, {run.duplicates} duplicates, answered {run.answered}"
    )
    hosts.runs.append(run)
    return run


def _merge(cpu: CpuShare) -> CpuShare:
    """web0, web1 -> web; worker0.. -> workers; sweeper kept."""
    merged: dict[str, float] = {}
    for name, seconds in cpu.seconds.items():
        key = "web" if name.startswith("web") else "workers" if name.startswith("worker") else name
        key = "sweeper" if name.startswith("sweeper") else key
        merged[key] = merged.get(key, 0.0) + seconds
    return CpuShare(cpu.wall, cpu.idle, cpu.busy, merged, cpu.others)


def run_hosts_bench(space: Space, opts: Options) -> Hosts:
    """The storm on 3 supervisors of 2 processes, then 1 supervisor of 1, 2, 4, 8 processes."""
    events = generate(opts.events, tag=f"h{space.run_id}", customers=max(10, opts.events // 20))
    rng = random.Random(29)
    requests = events + rng.sample(events, k=int(len(events) * DUPLICATE_SHARE))
    rng.shuffle(requests)
    hosts = Hosts(events, requests)
    run_once(space, opts, hosts, "storm", [PROCESSES_EACH] * SUPERVISORS)
    for n in SCALE:
        run_once(space, opts, hosts, f"scale_{n}", [n])
    return hosts
