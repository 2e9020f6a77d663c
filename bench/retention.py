"""Retention benchmark: our receiver under wrk with and without `stripe-ingest purge` deleting
a large set of old finished events (same database, same run), then fill-and-purge cycles that
record the size of stripe_events and event_attempts after each."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.events import generate, signed_requests, write_wrk_files
from bench.receiver import Check, Wrk, durability_checks, enqueued_ids, run_wrk
from bench.sender import send
from bench.space import WORK, Options, Space, say
from bench.system import settle
from tests.procs import child_env, free_port, run_server

TEMPLATES = 400  # distinct realistic bodies the fill repeats, each under its own event id
BATCH_SIZE = 1000  # purge's default
PAUSE: float | None = None  # purge's --pause beside the receiver under load (None: its default)
PURGE_AGE = "30d"
# One statement per chunk: old finished events (10% ignored, as unhandled types are) made from
# the templates, each with its own id and creation time, and the attempt row a worker writes.
FILL = """
WITH tpl AS MATERIALIZED (
    SELECT o - 1 AS n, type, payload, ordering_key
    FROM unnest(%(types)s::text[], %(payloads)s::jsonb[], %(keys)s::text[])
        WITH ORDINALITY AS t(type, payload, ordering_key, o)
), rows AS (
    SELECT %(prefix)s || g AS id, t.type, t.payload, t.ordering_key,
           now() - %(age)s::interval + g * interval '1 millisecond' AS at,
           CASE WHEN g %% 10 = 0 THEN 'ignored' ELSE 'processed' END AS status
    FROM generate_series(%(start)s::bigint, %(stop)s::bigint - 1) g
    JOIN tpl t ON t.n = g %% %(templates)s
), ins AS (
    INSERT INTO stripe_events (id, type, created, ordering_key, payload, received_at, status,
                               attempts, processed_at, process_seq)
    SELECT id, type, at - interval '2 seconds', ordering_key,
           jsonb_set(payload, '{id}', to_jsonb(id)), at - interval '1 second', status, 1, at,
           nextval('process_seq')
    FROM rows
    RETURNING id, processed_at, status
)
INSERT INTO event_attempts (event_id, attempt, started_at, finished_at, outcome, worker)
SELECT id, 1, processed_at - interval '5 milliseconds', processed_at, status, 'bench' FROM ins
"""
SIZES = """
SELECT pg_total_relation_size('stripe_events') AS total,
       pg_relation_size('stripe_events') AS heap,
       pg_indexes_size('stripe_events') AS indexes,
       pg_total_relation_size('event_attempts') AS attempts,
       (SELECT count(*) FROM stripe_events) AS events_rows
"""
BLOAT = "SELECT dead_tuple_percent AS dead, approx_free_percent AS free FROM pgstattuple_approx(%s)"


def fill(url: str, count: int, *, prefix: str, age: str, chunk: int = 100_000) -> float:
    """`count` finished events, finished about `age` ago; returns the seconds it took."""
    started, events = time.monotonic(), generate(TEMPLATES, tag="tpl", seed=5)
    templates = {
        "types": [e.type for e in events],
        "payloads": [e.body.decode() for e in events],
        "keys": [e.customer or e.id for e in events],
        "templates": TEMPLATES, "prefix": prefix, "age": age,
    }  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        for start in range(0, count, chunk):
            stop = min(count, start + chunk)
            conn.execute(FILL, {**templates, "start": start, "stop": stop})
        conn.execute("ANALYZE stripe_events, event_attempts")
    return time.monotonic() - started


@dataclass
class Sizes:
    total: int  # stripe_events with its indexes and TOAST, bytes
    heap: int
    indexes: int
    attempts: int  # event_attempts with its indexes
    events_rows: int
    dead: float | None = None  # pgstattuple_approx: % of stripe_events dead / free
    free: float | None = None


def sizes(url: str) -> Sizes:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(SIZES).fetchone()
        assert row is not None
        found = Sizes(*row)
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
            bloat = conn.execute(BLOAT, ("stripe_events",)).fetchone()
        except psycopg.Error:
            return found  # not installed here: sizes only
    assert bloat is not None
    found.dead, found.free = float(bloat[0]), float(bloat[1])
    return found


@dataclass
class Purge:
    command: str
    matched: int = 0
    deleted: int = 0
    seconds: float = 0.0
    finished: bool = False  # exited 0 having deleted all it matched
    error: str = ""

    @property
    def rate(self) -> float:
        return self.deleted / self.seconds if self.seconds else 0.0


def start_purge(
    env: dict[str, str], batch_size: int, pause: float | None
) -> tuple[subprocess.Popen[bytes], str]:
    args = ["purge", "--older-than", PURGE_AGE, "--yes", "--json", "--batch-size", str(batch_size)]
    args += ["--pause", str(pause)] if pause is not None else []
    command = "stripe-ingest " + " ".join(args)
    cli = str(Path(sys.executable).with_name("stripe-ingest"))
    proc = subprocess.Popen(
        [cli, *args], env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    return proc, command


def finish_purge(
    proc: subprocess.Popen[bytes], command: str, started: float, timeout: float
) -> Purge:
    result = Purge(command)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # it stops after its batch in progress
        out, err = proc.communicate(timeout=60)
        result.error = f"still running after {timeout:.0f} s: stopped"
    result.seconds = time.monotonic() - started
    if out.strip():
        done: dict[str, Any] = orjson.loads(out)
        result.matched, result.deleted = int(done["matched"]), int(done["deleted"])
    result.finished = proc.returncode == 0 and result.deleted == result.matched
    if proc.returncode and not result.error:
        result.error = f"exit {proc.returncode}: {err.decode(errors='replace').strip()[-300:]}"
    return result


def purge(env: dict[str, str], batch_size: int, timeout: float = 3600) -> Purge:
    """Purge as fast as it goes (--pause 0): the cycles measure space, not intake."""
    proc, command = start_purge(env, batch_size, 0.0)
    return finish_purge(proc, command, time.monotonic(), timeout)


@dataclass
class LoadRun:
    label: str  # "without purge" or "during purge"
    wrk: Wrk
    purge: Purge | None = None
    purge_outlasted_wrk: bool = False  # purge still running when wrk stopped
    checks: list[Check] = field(default_factory=list)


@dataclass
class Cycle:
    number: int
    fill_s: float
    purge: Purge
    vacuum_s: float
    filled: Sizes  # after the fill
    after: Sizes  # after purge and VACUUM


@dataclass
class Retention:
    events: int  # old finished events per fill
    batch_size: int
    fill_s: float  # filling the load runs' database
    autovacuum: str
    runs: list[LoadRun] = field(default_factory=list)
    cycles: list[Cycle] = field(default_factory=list)
    kept: int = 0  # young finished events that every purge had to leave, left at the end
    kept_expected: int = 0


def load_run(label: str, url: str, space: Space, opts: Options, purging: bool) -> LoadRun:
    """Our receiver under wrk in database `url`, optionally while purge runs against it."""
    tag = f"p{space.run_id}{int(purging)}"
    events = generate(max(5_000, int(opts.duration * 11_000)), tag=tag)
    workdir, port = WORK / "retention" / tag, free_port()
    namespace = space.namespace(f"ret-{int(purging)}")
    env = space.env(url, namespace)
    write_wrk_files(events, workdir, opts.threads)
    argv = [sys.executable, "-m", "ingest"]
    with run_server("ours", argv, {**env, "PORT": str(port)}, port, stop_timeout=20) as proc:
        say(f"retention/{label}: settled for {settle():.1f}s")
        send(port, signed_requests(generate(opts.warmup, tag=f"w{tag}", seed=11)), connections=32)
        proc_purge, started = None, time.monotonic()
        if purging:
            proc_purge, command = start_purge(env, BATCH_SIZE, PAUSE)
        wrk = run_wrk(port, workdir, opts)
        run = LoadRun(label, wrk)
        if proc_purge is not None:
            run.purge_outlasted_wrk = proc_purge.poll() is None
            run.purge = finish_purge(proc_purge, command, started, timeout=3600)
        proc.stop(timeout=20)
    queued = enqueued_ids(space.redis_url, namespace)
    run.checks = durability_checks(wrk, events, f"evt_{tag}_", url, queued, opts.connections)
    shown = f", purge {run.purge.rate:,.0f} rows/s" if run.purge else ""
    say(f"retention/{label}: {wrk.rps:,.0f} req/s, p99 {wrk.ms('p99')} ms{shown}")
    return run


def cycles(space: Space, count: int, rounds: int) -> tuple[list[Cycle], int, int]:
    """`rounds` times: fill `count` old events, purge them, VACUUM; beside a fixed set of young
    finished events that must stay. Returns the cycles, the young events left and expected."""
    url, found = space.database("retention_cycles"), []
    young = max(1, count // 10)
    fill(url, young, prefix="evt_young_", age="1 day")
    env = space.env(url, space.namespace("ret-cycles"))
    for number in range(1, rounds + 1):
        fill_s = fill(url, count, prefix=f"evt_c{number}_", age="40 days")
        filled = sizes(url)
        done = purge(env, BATCH_SIZE)
        started = time.monotonic()
        # Autovacuum does this where it is on (migration 0015's thresholds); the bench runs it
        # itself so that every cycle measures the same state whatever the server's settings.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) stripe_events, event_attempts")
        cycle = Cycle(number, fill_s, done, time.monotonic() - started, filled, sizes(url))
        found.append(cycle)
        say(
            f"retention/cycle {number}: filled {filled.total / 2**20:,.0f} MB, purged "
            f"{done.deleted:,} at {done.rate:,.0f} rows/s, {cycle.after.total / 2**20:,.0f} MB"
            " after"
        )
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM stripe_events WHERE id LIKE 'evt_young_%'")
        kept = int((row.fetchone() or (0,))[0])
    space.drop(url)
    return found, kept, young


def run_retention_bench(space: Space, opts: Options) -> Retention:
    count = 20_000 if opts.quick else opts.retention_events
    rounds = 2 if opts.quick else opts.retention_cycles
    url = space.database("retention_load")
    say(f"retention: filling {count:,} old finished events")
    fill_s = fill(url, count, prefix="evt_old_", age="40 days")
    with psycopg.connect(url) as conn:
        autovacuum = str((conn.execute("SHOW autovacuum").fetchone() or ("?",))[0])
    result = Retention(count, BATCH_SIZE, fill_s, autovacuum)
    for label, purging in (("without purge", False), ("during purge", True)):
        result.runs.append(load_run(label, url, space, opts, purging))
    space.drop(url)
    result.cycles, result.kept, result.kept_expected = cycles(space, count, rounds)
    return result
