"""The growth bench's throughput runs at one size: wrk runs of our receiver and drains through
real workers, alternating between the grown database and a fresh empty one, so that each
size's throughput is compared with a baseline measured in the same window of the machine's
load (sizes are tens of minutes apart: writeback after a large fill, other tenants)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import psycopg

from bench.events import BenchEvent, generate, signed_requests, write_wrk_files
from bench.pipeline import THREADS, WEB, Pipeline
from bench.receiver import EVENTS_PER_SECOND, SERVERS, Wrk, run_wrk
from bench.sender import send
from bench.space import WORK, WORKER_PROCESSES, Options, Space, say
from bench.system import settle
from tests.procs import free_port, run_server, run_sweeper, run_worker

THROUGHPUTS = ("receiver req/s", "pipeline events/s")
# The order of each repeat's runs, and the infix of their drain events' ids: the grown
# database's are `evt_p<label>x<repeat>_<n>` (the console's event page reads one).
DATABASES = {"grown": "", "empty": "e"}
DELETE = "DELETE FROM stripe_events WHERE id = ANY(%s)"
# The drain's events still pending, read through the pending set's partial index (OFFSET 0 keeps
# the planner there): a look-up of every id each poll would cost what the table holds (10k probes
# of a 10M-row primary key), and be counted as the grown database's PostgreSQL time.
PENDING = """SELECT count(*) FROM (SELECT id FROM stripe_events WHERE status = 'pending' OFFSET 0) p
WHERE starts_with(id, %s)"""
SPAN = """SELECT count(*), extract(epoch FROM max(processed_at) - min(processed_at))::float8
FROM stripe_events WHERE id = ANY(%s) AND processed_at IS NOT NULL"""

Figures = dict[str, float]


def receiver(
    space: Space, opts: Options, url: str, label: str, warm: Sequence[BenchEvent],
    events: Sequence[BenchEvent],
) -> Wrk:  # fmt: skip
    """One wrk run of ours against the database at `url`, in a server of its own warmed up with
    `warm`: each run starts the same way, whichever database the previous one used."""
    port, workdir = free_port(), WORK / "growth"
    env = {**space.env(url, space.namespace(f"growth-recv-{label}")), "PORT": str(port)}
    write_wrk_files(events, workdir, opts.threads)
    with run_server("ours", SERVERS["ours"], env, port, stop_timeout=20):
        send(port, signed_requests(warm), connections=32)
        settle()
        return run_wrk(port, workdir, opts)


def drain(space: Space, opts: Options, url: str, label: str) -> float:
    """opts.events stored through the receiver, then drained by real workers (and sweeper)."""
    events = generate(opts.events, tag=f"p{label}", seed=23)
    ids, port = [e.id for e in events], free_port()
    env = space.env(url, space.namespace(f"growth-pipe-{label}"))
    with run_server("web", WEB, {**env, "PORT": str(port)}, port, stop_timeout=20):
        Pipeline(space, opts, events).post(port, events, None)
    settle()
    deadline = time.monotonic() + max(120.0, opts.events / 20)
    with (
        run_worker(env, WORKER_PROCESSES, THREADS, wait_ready=False, stop_timeout=20) as worker,
        run_sweeper(env),
        psycopg.connect(url, autocommit=True) as conn,
    ):
        while (left := conn.execute(PENDING, (f"evt_p{label}_",)).fetchone()) and left[0] > 0:
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"growth drain left {left[0]}:\n{worker.logs()[-3000:]}")
            time.sleep(0.25)
        n, span = conn.execute(SPAN, (ids,)).fetchone() or (0, 0.0)
    return float((n - 1) / span) if span else 0.0


def alternate(space: Space, opts: Options, url: str, label: str) -> tuple[Figures, Figures]:
    """opts.repeats receiver runs, then opts.repeats drains, each repeat in the grown database
    at `url` and then in a fresh empty one: the medians of each, (grown, empty)."""
    urls = {"grown": url, "empty": space.database(f"{label}_empty")}
    wrks: dict[str, list[Wrk]] = {db: [] for db in DATABASES}
    drains: dict[str, list[float]] = {db: [] for db in DATABASES}
    try:
        count, ids = max(5_000, int(opts.duration * EVENTS_PER_SECOND)), []
        for repeat in range(opts.repeats):
            # The same events in both databases (ids are distinct within each): generating them
            # takes seconds per run.
            warm = generate(opts.warmup, tag=f"w{label}x{repeat}", seed=11)
            events = generate(count, tag=f"r{label}x{repeat}")
            ids += [e.id for e in (*warm, *events)]
            for db in DATABASES:
                wrks[db].append(
                    receiver(space, opts, urls[db], f"{label}{db}{repeat}", warm, events)
                )
        # Autovacuum would clear the deleted rows; left, they bloat what the drains and the
        # queries read. Both databases, so their drains start from the same kind of table.
        for at in urls.values():
            with psycopg.connect(at, autocommit=True) as conn:
                conn.execute(DELETE, (ids,))
                conn.execute("VACUUM (ANALYZE) stripe_events")
        for repeat in range(opts.repeats):
            for db, infix in DATABASES.items():
                drains[db].append(drain(space, opts, urls[db], f"{label}{infix}x{repeat}"))
    finally:
        space.drop(urls["empty"])
    found = {db: _medians(wrks[db], drains[db]) for db in DATABASES}
    say(
        "growth: alternating runs,",
        {db: {k: round(v) for k, v in f.items()} for db, f in found.items()},
    )
    return found["grown"], found["empty"]


def _medians(wrks: list[Wrk], drains: list[float]) -> Figures:
    return {
        "receiver req/s": statistics.median(w.rps for w in wrks),
        "receiver p99 ms": statistics.median(w.ms("p99") or 0.0 for w in wrks),
        "pipeline events/s": statistics.median(drains),
    }
