"""Pipeline benchmark: events posted through our receiver and finished by our workers (ordering and
the billing mirror on), against a trivial Dramatiq actor doing one UPDATE per message.

Phases, each in a fresh database and Redis namespace:
- drain: N events stored through the receiver while no worker runs, then 2 worker processes
  start and finish the backlog: the workers' own events/s, and the ordering check;
- trivial: the same N stored rows (a copy of the drain database taken before it ran) and the
  same N ids enqueued, finished by `bench.servers.trivial_actor` with as many processes/threads;
- full: workers running, N events posted as fast as 32 connections go: events/s from first
  receipt to last finish, receipt-to-finished latency;
- half: the same at half the full-load events/s (paced, open loop).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from bench import cpu
from bench.cpu import CpuShare
from bench.events import BenchEvent, generate, signed_requests
from bench.infra import (
    REPO,
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
from bench.receiver import SECRET
from bench.sender import SendResult, send
from shared.broker import enqueue_events, make_broker
from shared.settings import Settings

WORKER_PROCESSES = 2


@dataclass
class Phase:
    name: str
    events: int
    finished: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    events_per_s: float = 0.0
    wall_s: float = 0.0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    # Seconds from the first finish until 50/90/99/100% of the events were finished.
    finish_timeline_s: tuple[float, ...] = ()
    send: SendResult | None = None
    offered_rate: float | None = None
    order_violations: int | None = None
    mirror_rows: dict[str, int] = field(default_factory=dict)
    worker_memory: Memory | None = None
    web_memory: Memory | None = None
    cpu: CpuShare | None = None
    timed_out: bool = False
    # Events finished inside the CPU window (drain/trivial: from the first finish on).
    cpu_events: int = 0
    note: str = ""
    # Which run of this phase (drain and trivial run several times, alternating).
    repeat: int = 1


@dataclass
class PipelineReport:
    events: int
    phases: list[Phase] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    skipped: str = ""

    def phase(self, name: str) -> Phase | None:
        """The phase, or for a repeated one its median run by events/s."""
        runs = sorted((p for p in self.phases if p.name == name), key=lambda p: p.events_per_s)
        return runs[(len(runs) - 1) // 2] if runs else None

    def runs_of(self, name: str) -> list[Phase]:
        return [p for p in self.phases if p.name == name]


def worker_available() -> bool:
    return (REPO / "worker" / "__main__.py").exists()


def _sweeper_argv() -> list[str] | None:
    try:
        argv = procfile_command("sweeper")
    except KeyError:
        return None
    module = argv[-1] if argv[:2] == ["python", "-m"] else ""
    path = REPO / module.replace(".", "/")
    return argv if path.with_suffix(".py").exists() or (path / "__main__.py").exists() else None


def _env(database_url: str, redis_space: RedisSpace, namespace: str, port: int) -> dict[str, str]:
    return process_env(
        {
            "PORT": str(port),
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_space.url,
            "REDIS_NAMESPACE": namespace,
            "WORKER_PROCESSES": str(WORKER_PROCESSES),
            "WORKER_METRICS_PORT": str(free_port()),
            "SWEEPER_METRICS_PORT": str(free_port()),
        }
    )


def _progress(database_url: str, prefix: str) -> tuple[int, dict[str, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM stripe_events WHERE id LIKE %s GROUP BY status",
            (prefix + "%",),
        ).fetchall()
    statuses = {str(r[0]): int(r[1]) for r in rows}
    return sum(v for k, v in statuses.items() if k != "pending"), statuses


def wait_finished(
    database_url: str, prefix: str, expect: int, timeout: float, procs: Sequence[Proc]
) -> tuple[bool, dict[str, int]]:
    deadline = time.monotonic() + timeout
    statuses: dict[str, int] = {}
    while time.monotonic() < deadline:
        finished, statuses = _progress(database_url, prefix)
        if finished >= expect:
            return True, statuses
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        time.sleep(0.1)
    return False, statuses


def measure(phase: Phase, database_url: str, prefix: str, *, from_receipt: bool) -> None:
    """events/s and latency from the rows' own timestamps (one clock: PostgreSQL's)."""
    start = "min(received_at)" if from_receipt else "min(processed_at)"
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"""
            SELECT count(*),
                   extract(epoch FROM max(processed_at) - {start}),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY lat),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY lat),
                   max(lat),
                   percentile_cont(ARRAY[0.5, 0.9, 0.99, 1.0]) WITHIN GROUP (ORDER BY since)
            FROM (SELECT received_at, processed_at,
                         extract(epoch FROM processed_at - min(processed_at) OVER ()) AS since,
                         extract(epoch FROM processed_at - received_at) * 1000 AS lat
                  FROM stripe_events
                  WHERE id LIKE %s AND processed_at IS NOT NULL) s
            """,
            (prefix + "%",),
        ).fetchone()
    assert row is not None
    count, span = int(row[0]), float(row[1] or 0.0)
    phase.finished = count
    # `count` finishes spread over `span`; from receipt the first event also counts.
    phase.events_per_s = (count if from_receipt else count - 1) / span if span > 0 else 0.0
    if row[5] is not None:
        phase.finish_timeline_s = tuple(float(v) for v in row[5])
    if from_receipt:
        phase.latency_p50_ms = float(row[2]) if row[2] is not None else None
        phase.latency_p99_ms = float(row[3]) if row[3] is not None else None
        phase.latency_max_ms = float(row[4]) if row[4] is not None else None


def _cpu_window(
    url: str, prefix: str, n: int, procs: Sequence[Proc]
) -> tuple[int, cpu.CpuSnapshot, float]:
    """Start counting CPU at the first finished event (start-up and imports left out)."""
    wait_finished(url, prefix, 1, 60.0, procs)
    finished, _ = _progress(url, prefix)
    return n - finished, cpu.snapshot(), time.monotonic()


def order_violations(database_url: str, prefix: str) -> int:
    """Finished events whose process_seq is below that of an earlier event of their key."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """
            SELECT count(*) FROM (
              SELECT process_seq, max(process_seq) OVER (
                       PARTITION BY ordering_key ORDER BY created, received_at, id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
              FROM stripe_events
              WHERE id LIKE %s AND status IN ('processed', 'ignored')) s
            WHERE process_seq < before
            """,
            (prefix + "%",),
        ).fetchone()
    return int(row[0]) if row else -1


def mirror_rows(database_url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in ("customers", "subscriptions", "invoices", "charges", "disputes"):
            try:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            except psycopg.errors.UndefinedTable:
                continue
            counts[table] = int(row[0]) if row else 0
    return counts


class Stack:
    """Our processes for one phase, started the Procfile's way; stopped in reverse order."""

    def __init__(self, label: str, env: dict[str, str]) -> None:
        self.label = label
        self.env = env
        self.workdir = WORK / "pipeline" / label
        self.procs: dict[str, Proc] = {}

    def web(self, port: int) -> Proc:
        proc = Proc("web", procfile_command("web"), self.env, self.workdir)
        self.procs["web"] = proc
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        return proc

    def workers(self) -> Proc:
        proc = Proc("worker", procfile_command("worker"), self.env, self.workdir)
        self.procs["worker"] = proc
        sweeper = _sweeper_argv()
        if sweeper is not None:
            self.procs["sweeper"] = Proc("sweeper", sweeper, self.env, self.workdir)
        return proc

    def stop(self, *names: str) -> None:
        for name in names or tuple(reversed(self.procs)):
            proc = self.procs.pop(name, None)
            if proc is not None:
                code = proc.stop()
                if code not in (0, None, -15, 143):
                    say(f"pipeline/{self.label}: {name} exited with {code}; log {proc.log_path}")


def _post(
    port: int, events: Sequence[BenchEvent], connections: int, rate: float | None
) -> SendResult:
    result = send(
        "127.0.0.1", port, signed_requests(events, SECRET), connections=connections, rate=rate
    )
    if result.ok != len(events):
        say(
            f"pipeline: {result.ok}/{len(events)} answered 200; {result.statuses}, "
            f"errors {result.errors}"
        )
    return result


def run_drain_and_trivial(
    events: Sequence[BenchEvent],
    prefix: str,
    *,
    databases: Databases,
    redis_space: RedisSpace,
    connections: int,
    timeout: float,
    report: PipelineReport,
    repeat: int = 1,
) -> None:
    n = len(events)
    url = databases.fresh(f"pipe_drain_{repeat}")
    namespace = redis_space.namespace(f"pipe-drain-{repeat}")
    port = free_port()
    stack = Stack("drain", _env(url, redis_space, namespace, port))
    drain = Phase("drain", n, repeat=repeat)
    try:
        web = stack.web(port)
        with watch_memory(web.pid) as web_memory:
            drain.send = _post(port, events, connections, None)
        drain.web_memory = web_memory
        stack.stop("web")  # flushes what it has not enqueued yet
        trivial_url = databases.clone(url, f"pipe_trivial_{repeat}")
        databases.settle()
        say(f"pipeline/drain: {n} events stored; 2 worker processes start")
        worker = stack.workers()
        report.commands["worker"] = (
            " ".join(worker.argv) + f"  (WORKER_PROCESSES={WORKER_PROCESSES})"
        )
        started = time.monotonic()
        with watch_memory(worker.pid) as worker_memory:
            drain.cpu_events, before, cpu_started = _cpu_window(url, prefix, n, [worker])
            done, drain.statuses = wait_finished(url, prefix, n, timeout, [worker])
            drain.cpu = cpu.share(
                before, cpu.snapshot(), time.monotonic() - cpu_started, {"workers": [worker.pid]}
            )
        drain.wall_s = time.monotonic() - started
        drain.timed_out = not done
        drain.worker_memory = worker_memory
        measure(drain, url, prefix, from_receipt=False)
        drain.order_violations = order_violations(url, prefix)
        drain.mirror_rows = mirror_rows(url)
        say(
            f"pipeline/drain: {drain.events_per_s:,.0f} events/s, statuses {drain.statuses}, "
            f"finished 50/90/99/100% after {drain.finish_timeline_s} s"
        )
    finally:
        stack.stop()
        databases.drop(url)
    report.phases.append(drain)
    databases.settle()
    run_trivial(
        trivial_url,
        events,
        prefix,
        redis_space=redis_space,
        timeout=timeout,
        report=report,
        repeat=repeat,
    )
    databases.drop(trivial_url)


def run_trivial(
    url: str,
    events: Sequence[BenchEvent],
    prefix: str,
    *,
    redis_space: RedisSpace,
    timeout: float,
    report: PipelineReport,
    repeat: int = 1,
) -> None:
    n = len(events)
    namespace = redis_space.namespace(f"pipe-trivial-{repeat}")
    settings = Settings(redis_url=redis_space.url, redis_namespace=namespace)
    broker = make_broker(settings)
    try:
        enqueue_events(broker, [e.id for e in events])
    finally:
        broker.close()
    env = _env(url, redis_space, namespace, free_port())
    threads = Settings.from_env(environ=env, env_file=None).worker_threads
    argv = [
        "python", "-m", "dramatiq", "bench.servers.trivial_actor",
        "--processes", str(WORKER_PROCESSES), "--threads", str(threads),
    ]  # fmt: skip
    report.commands["trivial"] = " ".join(argv)
    phase = Phase("trivial", n, repeat=repeat)
    started = time.monotonic()
    proc = Proc("trivial", argv, env, WORK / "pipeline" / "trivial")
    try:
        with watch_memory(proc.pid) as memory:
            phase.cpu_events, before, cpu_started = _cpu_window(url, prefix, n, [proc])
            done, phase.statuses = wait_finished(url, prefix, n, timeout, [proc])
            phase.cpu = cpu.share(
                before, cpu.snapshot(), time.monotonic() - cpu_started, {"workers": [proc.pid]}
            )
        phase.wall_s = time.monotonic() - started
        phase.timed_out = not done
        phase.worker_memory = memory
        measure(phase, url, prefix, from_receipt=False)
        say(
            f"pipeline/trivial: {phase.events_per_s:,.0f} events/s, "
            f"finished 50/90/99/100% after {phase.finish_timeline_s} s"
        )
    finally:
        proc.stop()
    report.phases.append(phase)


def run_live(
    name: str,
    events: Sequence[BenchEvent],
    prefix: str,
    *,
    rate: float | None,
    databases: Databases,
    redis_space: RedisSpace,
    connections: int,
    timeout: float,
    report: PipelineReport,
) -> Phase:
    url = databases.fresh(f"pipe_{name}")
    namespace = redis_space.namespace(f"pipe-{name}")
    port = free_port()
    stack = Stack(name, _env(url, redis_space, namespace, port))
    phase = Phase(name, len(events), offered_rate=rate)
    databases.settle()
    try:
        worker = stack.workers()
        web = stack.web(port)
        time.sleep(1.0)  # let the worker processes come up before the clock starts
        pace = f" at {rate:,.0f}/s" if rate else " as fast as it goes"
        say(f"pipeline/{name}: posting {len(events)} events{pace}")
        started = time.monotonic()
        with watch_memory(web.pid) as web_memory, watch_memory(worker.pid) as worker_memory:
            before = cpu.snapshot()
            phase.send = _post(port, events, connections, rate)
            done, phase.statuses = wait_finished(url, prefix, len(events), timeout, [worker, web])
            phase.cpu = cpu.share(
                before,
                cpu.snapshot(),
                time.monotonic() - started,
                {"web": [web.pid], "workers": [worker.pid]},
            )
        phase.wall_s = time.monotonic() - started
        phase.timed_out = not done
        phase.web_memory, phase.worker_memory = web_memory, worker_memory
        measure(phase, url, prefix, from_receipt=True)
        phase.mirror_rows = mirror_rows(url)
        say(
            f"pipeline/{name}: {phase.events_per_s:,.0f} events/s, receipt-to-finished p50 "
            f"{phase.latency_p50_ms or 0:.0f} ms, p99 {phase.latency_p99_ms or 0:.0f} ms"
        )
    finally:
        stack.stop()
        databases.drop(url)
    report.phases.append(phase)
    return phase


def pipeline_events(n: int, tag: str) -> list[BenchEvent]:
    return generate(n, tag=tag, seed=23)


def run_pipeline_bench(
    *,
    databases: Databases,
    redis_space: RedisSpace,
    events: int,
    connections: int,
    half_load_max_s: float = 30.0,
    repeats: int = 3,
) -> PipelineReport:
    report = PipelineReport(events)
    report.commands["web"] = " ".join(procfile_command("web"))
    timeout = max(120.0, events / 20)
    tag = f"p{databases.run_id}"
    batch = pipeline_events(events, tag)
    prefix = f"evt_{tag}_"
    if not worker_available():
        report.skipped = "`python -m worker` does not exist yet: only the trivial baseline ran"
        url = databases.fresh("pipe_trivial")
        _store_directly(url, batch)
        run_trivial(url, batch, prefix, redis_space=redis_space, timeout=timeout, report=report)
        databases.drop(url)
        return report
    # Drain and trivial alternate `repeats` times; the median run of each is compared.
    for repeat in range(1, max(1, repeats) + 1):
        run_drain_and_trivial(
            batch,
            prefix,
            databases=databases,
            redis_space=redis_space,
            connections=connections,
            timeout=timeout,
            report=report,
            repeat=repeat,
        )
    full = run_live(
        "full",
        batch,
        prefix,
        rate=None,
        databases=databases,
        redis_space=redis_space,
        connections=connections,
        timeout=timeout,
        report=report,
    )
    half_rate = max(1.0, full.events_per_s / 2)
    count = max(100, min(events, int(half_rate * half_load_max_s)))
    half = run_live(
        "half",
        batch[:count],
        prefix,
        rate=half_rate,
        databases=databases,
        redis_space=redis_space,
        connections=connections,
        timeout=timeout,
        report=report,
    )
    if count < events:
        half.note = (
            f"{count} of the {events} events, to keep this phase under {half_load_max_s:.0f} s"
        )
    return report


def _store_directly(url: str, events: Sequence[BenchEvent]) -> None:
    from ingest.event import parse_event
    from ingest.storage import insert_events_sync
    from shared.db import connect

    with connect(url) as conn:
        rows = [parse_event(e.body) for e in events]
        for start in range(0, len(rows), 500):
            insert_events_sync(conn, rows[start : start + 500])


def profile_workers(
    events: Sequence[BenchEvent],
    prefix: str,
    *,
    databases: Databases,
    redis_space: RedisSpace,
    connections: int,
    seconds: float,
) -> Profile:
    """A drain of `events` again, with py-spy recording every worker process."""
    url = databases.fresh("pipe_profile")
    namespace = redis_space.namespace("pipe-profile")
    port = free_port()
    stack = Stack("profile", _env(url, redis_space, namespace, port))
    try:
        stack.web(port)
        _post(port, events, connections, None)
        stack.stop("web")
        worker = stack.workers()
        # Start recording once events are being finished: not the imports at start-up.
        wait_finished(url, prefix, max(1, len(events) // 20), 60.0, [worker])
        say(f"pipeline: profiling the workers with py-spy for {seconds:.0f}s")
        recorder = Recorder(
            "workers (drain)",
            worker.pid,
            seconds,
            WORK / "profiles" / "workers.txt",
            subprocesses=True,
        )
        wait_finished(url, prefix, len(events), max(120.0, seconds * 4), [worker])
        return recorder.finish()
    finally:
        stack.stop()
        databases.drop(url)
