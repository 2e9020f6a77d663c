"""Catch-up: a backlog of pending events, as after an outage in which Redis lost every message
(stored, never processed), drains through real workers once the sweeper re-sends it, as in
production (default SWEEPER_* settings). The backlog is inserted in SQL from realistic events
(bench/events.py bodies, each rewritten onto its own id and one of many customers); the drain
rate is compared with the full pipeline's rate (bench/pipeline.py's `full` phase, same run)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import redis

from bench.events import generate
from bench.pipeline import ORDER_VIOLATIONS, THREADS, Phase, Pipeline
from bench.space import WORKER_PROCESSES, Options, Space, say
from bench.system import CpuShare, Snapshot, cpu_since, settle
from ingest.event import ordering_key
from shared.broker import queue_key
from tests.procs import Running, run_sweeper, run_worker
from tests.reliability.harness import worker_processes

TEMPLATES, PER_CUSTOMER, CHUNK = 1000, 10, 100_000
SAMPLE_S, WARMUP_SHARE = 5.0, 0.05
TOKEN_CUSTOMER, TOKEN_TAG = "bench00000", "TPL"
# Event g of the backlog: template g % TEMPLATES with its customer tokens rewritten onto customer
# c(g) (a scrambled g mod customers), its object ids made unique by g, its own id and `created`
# (8 per second, so ties occur), received during the hour before and never sent on.
BACKLOG = """
INSERT INTO stripe_events (id, type, created, livemode, api_version, ordering_key, payload,
                           received_at, enqueued_at)
SELECT e.id, t.type, to_timestamp(e.created), false, t.api_version,
       replace(replace(t.key, 'bench00000', e.cus), 'TPL', e.tag),
       jsonb_set(jsonb_set(replace(replace(t.body, 'bench00000', e.cus), 'TPL', e.tag)::jsonb,
                           '{id}', to_jsonb(e.id)), '{created}', to_jsonb(e.created)),
       e.received, e.received
FROM (SELECT g, %(prefix)s || lpad(g::text, 7, '0') AS id, 'c' || g || 'x' AS tag,
             'bl' || lpad(((g * 2654435761) %% 4294967296 %% %(customers)s)::text, 7, '0') AS cus,
             %(base)s + g / 8 AS created,
             now() - interval '1 hour' + g * interval '50 minutes' / %(total)s AS received
      FROM generate_series(%(low)s, %(high)s - 1) AS g) e
JOIN templates t ON t.n = e.g %% %(templates)s
"""
# While it drains, progress is read from `process_seq` (every finish draws one number; a round
# rolled back draws some too, so it may run ahead): a full count every few seconds would read the
# whole table, and its cost would be counted as PostgreSQL's per event. The exact count, once the
# sequence says the backlog is done (and again until it is).
DRAWN = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM process_seq"
PROGRESS = """
SELECT count(*) FILTER (WHERE status <> 'pending'), count(*) FILTER (WHERE attempts > 1),
       extract(epoch FROM max(processed_at) - min(processed_at))
FROM stripe_events
"""


@dataclass
class Sample:
    at_s: float
    finished: int
    rss_mb: dict[int, float]  # per worker process
    redis_mb: float
    queued: int  # messages in our namespace's queue


@dataclass
class Catchup:
    backlog: int
    customers: int
    insert_s: float = 0.0
    drain_s: float = 0.0
    finished: int = 0
    events_per_s: float = 0.0  # first finish to last
    baseline: Phase | None = None
    order_violations: int | None = None
    multi_attempt: int = 0
    samples: list[Sample] = field(default_factory=list)
    cpu: CpuShare | None = None
    timed_out: bool = False

    @property
    def ratio(self) -> float:
        rate = self.baseline.events_per_s if self.baseline else 0.0
        return self.events_per_s / rate if rate else 0.0

    def memory_growth(self) -> tuple[float, float, float]:
        """Largest last/first RSS ratio of a worker process after warm-up; first, last MB."""
        warm = [s for s in self.samples if s.finished >= self.backlog * WARMUP_SHARE]
        if len(warm) < 2:
            return 1.0, 0.0, 0.0
        first, last = warm[0].rss_mb, warm[-1].rss_mb
        pids = [p for p in first if p in last and first[p]]
        worst = max(pids, key=lambda p: last[p] / first[p], default=None)
        if worst is None:
            return 1.0, 0.0, 0.0
        return last[worst] / first[worst], first[worst], last[worst]


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def insert_backlog(url: str, prefix: str, total: int, customers: int) -> None:
    """`total` pending events, CHUNK rows per statement."""
    events = generate(TEMPLATES, tag=TOKEN_TAG, customers=1, seed=31)
    rows = []
    for n, e in enumerate(events):
        body = e.body.decode()
        api_version = orjson.loads(body).get("api_version")
        rows.append((n, e.type, api_version, ordering_key(orjson.loads(body)), body))
    base = int(time.time()) - 2 * 86_400
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE templates (n int, type text, api_version text, key text, body text)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO templates VALUES (%s, %s, %s, %s, %s)", rows)
        for low in range(0, total, CHUNK):
            high = min(total, low + CHUNK)
            params = {"prefix": prefix, "customers": customers, "base": base, "total": total}
            conn.execute(BACKLOG, {**params, "low": low, "high": high, "templates": TEMPLATES})
        conn.execute("ANALYZE stripe_events")


def _sample(url: str, r: redis.Redis, queue: str, started: float, worker: Running) -> Sample:
    """Progress (from the sequence: see DRAWN), worker memory, Redis memory and queue depth."""
    with psycopg.connect(url) as conn:
        row = conn.execute(DRAWN).fetchone()
    assert row is not None
    finished = int(row[0])
    memory = r.info("memory")
    sample = Sample(
        time.monotonic() - started,
        finished,
        {pid: _rss_mb(pid) for pid in worker_processes(worker)},
        int(memory["used_memory"]) / 2**20,
        int(r.llen(queue)),
    )
    return sample


def _progress(url: str) -> tuple[int, int, float | None]:
    """Exact: events finished, events with more than one attempt, first to last finish (s)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(PROGRESS).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), row[2]


def run_catchup_bench(space: Space, opts: Options, pipeline: Pipeline | None = None) -> Catchup:
    """The backlog drained by WORKER_PROCESSES processes and a sweeper; without `pipeline` a
    short full-pipeline run first gives the baseline."""
    if pipeline is None:
        pipeline = Pipeline(space, opts, generate(opts.events, tag=f"p{space.run_id}", seed=23))
        pipeline.live("full", pipeline.events, None)
    result = Catchup(opts.backlog, max(1, opts.backlog // PER_CUSTOMER))
    result.baseline = pipeline.phase("full")
    url, namespace = space.database("catchup"), space.namespace("catchup")
    started, prefix = time.monotonic(), f"evt_c{space.run_id}_"
    say(f"catchup: inserting {opts.backlog:,} pending events")
    insert_backlog(url, prefix, opts.backlog, result.customers)
    result.insert_s = time.monotonic() - started
    say(f"catchup: inserted in {result.insert_s:.0f} s; draining")
    settle()
    r = redis.Redis.from_url(space.redis_url)
    env = space.env(url, namespace)
    deadline = max(600.0, opts.backlog / 200)  # 200 events/s at least, or it is reported
    with (
        run_worker(env, WORKER_PROCESSES, THREADS, stop_timeout=20) as worker,
        run_sweeper(env),
    ):
        started, before = time.monotonic(), Snapshot()
        finished, multi, span = 0, 0, None
        while True:
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.logs()[-4000:]}")
            sample = _sample(url, r, queue_key(namespace), started, worker)
            result.samples.append(sample)
            if sample.finished >= opts.backlog:
                finished, multi, span = _progress(url)
                if finished >= opts.backlog:
                    break
            if sample.at_s > deadline:
                finished, multi, span = _progress(url)
                break
            time.sleep(SAMPLE_S)  # the sampling interval
        result.timed_out = finished < opts.backlog
        result.cpu = cpu_since(before, {"workers": worker.pid})
        result.drain_s = time.monotonic() - started
    r.close()
    result.finished, result.multi_attempt = finished, multi
    result.events_per_s = (finished - 1) / float(span) if span else 0.0
    with psycopg.connect(url) as conn:
        row = conn.execute(ORDER_VIOLATIONS, {"prefix": f"{prefix}%"}).fetchone()
    result.order_violations = row[0] if row else None
    space.drop(url)
    growth, first, last = result.memory_growth()
    say(
        f"catchup: {result.events_per_s:,.0f} events/s ({result.ratio:.2f}x full pipeline), "
        f"{result.order_violations} order violations, worker RSS {first:.0f} -> {last:.0f} MB "
        f"({growth:.2f}x)"
    )
    return result
