"""Growth benchmark: the same figures as `stripe_events` grows (0, 1M, 10M rows by default),
filled in SQL (bench/fill.py) in one database, each size measured after VACUUM ANALYZE:
receiver and pipeline throughput, the sweeper's pass, the CLI's queries and the console's pages.
Size 0 is the baseline; at the largest size throughputs should hold and queries stay fast."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from bench.events import generate, signed_requests, write_wrk_files
from bench.fill import fill
from bench.pipeline import THREADS, WEB, Pipeline
from bench.receiver import EVENTS_PER_SECOND, SERVERS, run_wrk
from bench.report import Target, table
from bench.sender import send
from bench.space import WORK, WORKER_PROCESSES, Options, Space, say
from bench.system import settle
from shared.broker import make_broker
from shared.settings import Settings
from stripe_ingest.cli import store
from tests.procs import free_port, run_console, run_server, run_sweeper, run_worker
from worker.sweeper import Sweeper, load_hooks

PLOT = Path(__file__).with_name("growth.png")
TOKEN = "bench-console-token-0123456789abcdef"
REPEATS = 5
THROUGHPUTS = ("receiver req/s", "pipeline events/s")
QUERY_MS = 100  # every query and page at the largest size
DELETE = "DELETE FROM stripe_events WHERE id = ANY(%s)"
FINISHED = "SELECT count(*) FROM stripe_events WHERE id = ANY(%s) AND status <> 'pending'"
SPAN = """SELECT count(*), extract(epoch FROM max(processed_at) - min(processed_at))::float8
FROM stripe_events WHERE id = ANY(%s) AND processed_at IS NOT NULL"""


@dataclass
class Size:
    rows: int
    fill_s: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)  # median of the repetitions


@dataclass
class Growth:
    sizes: list[Size] = field(default_factory=list)
    plot: Path = PLOT

    def ratio(self, name: str) -> float:
        first, last = self.sizes[0].figures[name], self.sizes[-1].figures[name]
        return last / first if first else 0.0


def timed(call: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median ms of `repeats` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def receiver(space: Space, opts: Options, url: str, label: str) -> dict[str, float]:
    """opts.repeats wrk runs of our server against the database (the median is kept); their
    rows are deleted (and vacuumed) afterwards."""
    count = max(5_000, int(opts.duration * EVENTS_PER_SECOND))
    warm = generate(opts.warmup, tag=f"w{label}", seed=11)
    workdir, port, runs, ids = WORK / "growth", free_port(), [], [e.id for e in warm]
    env = {**space.env(url, space.namespace(f"growth-recv-{label}")), "PORT": str(port)}
    with run_server("ours", SERVERS["ours"], env, port, stop_timeout=20):
        send(port, signed_requests(warm), connections=32)
        for repeat in range(opts.repeats):
            events = generate(count, tag=f"r{label}x{repeat}")
            ids += [e.id for e in events]
            write_wrk_files(events, workdir, opts.threads)
            settle()
            runs.append(run_wrk(port, workdir, opts))
    # Autovacuum would clear the deleted rows; left, they bloat what the queries below read.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DELETE, (ids,))
        conn.execute("VACUUM (ANALYZE) stripe_events")
    return {
        "receiver req/s": statistics.median(w.rps for w in runs),
        "receiver p99 ms": statistics.median(w.ms("p99") or 0.0 for w in runs),
    }


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
        while (done := conn.execute(FINISHED, (ids,)).fetchone()) and done[0] < len(ids):
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"growth drain stopped at {done[0]}:\n{worker.logs()[-3000:]}")
            time.sleep(0.25)
        n, span = conn.execute(SPAN, (ids,)).fetchone() or (0, 0.0)
    return float((n - 1) / span) if span else 0.0


def queries(space: Space, url: str, customer: str) -> dict[str, float]:
    """The sweeper's pass and the CLI commands' query paths, timed in this process."""
    settings = Settings(
        database_url=url, redis_url=space.redis_url, redis_namespace=space.namespace("growth-sw")
    )
    with closing(make_broker(settings)) as broker:
        load_hooks(settings, broker)
        sweeper = Sweeper(settings, broker)
        try:
            found = {"sweeper pass ms": timed(sweeper.run_pass)}
        finally:
            sweeper.close()
    mine, dead = store.Filter(customer=customer), store.Filter()
    calls: dict[str, Callable[[store.Connection], object]] = {
        "stats ms": lambda c: store.stats(c, 5),
        "events list --customer ms": lambda c: (store.list_events(c, mine),
                                                store.count_events(c, mine)),
        "dead-letters list ms": lambda c: (store.list_dead(c, dead), store.count_dead(c, dead)),
    }  # fmt: skip
    with store.session(url) as conn:
        found |= {name: timed(partial(call, conn)) for name, call in calls.items()}
    return found


def commands(env: dict[str, str], customer: str) -> dict[str, float]:
    """Wall time of the real `stripe-ingest` commands, Python start-up and imports included."""
    cli = [sys.executable, "-c", "from stripe_ingest.cli.main import main; main()"]
    argvs = {
        "stats": ["stats"],
        "events list --customer": ["events", "list", "--customer", customer],
        "dead-letters list": ["dead-letters", "list"],
        "start-up (--help)": ["--help"],
    }

    def run(argv: list[str]) -> None:
        subprocess.run([*cli, *argv], env=env, check=True, capture_output=True, timeout=120)

    return {f"CLI {k} (command) ms": timed(partial(run, a), 3) for k, a in argvs.items()}


def console(env: dict[str, str], event_id: str, customer: str) -> dict[str, float]:
    """GET of each page with the console token, against a real console process."""
    paths = {
        "overview": "/", "events list": "/events", "one event": f"/events/{event_id}",
        "dead letters": "/dead-letters", "one customer": f"/customers/{customer}",
    }  # fmt: skip
    with run_console({**env, "CONSOLE_TOKEN": TOKEN}) as served:

        def get(path: str) -> None:
            request = urllib.request.Request(
                served.url + path, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()

        return {f"console {k} ms": timed(partial(get, p)) for k, p in paths.items()}


def measure(space: Space, opts: Options, url: str, size: Size, index: int) -> None:
    label = f"{space.run_id}g{index}"
    env = {**space.env(url, space.namespace(f"growth-cli-{label}")), "LOG_LEVEL": "warning"}
    size.figures |= receiver(space, opts, url, label)
    drains = [drain(space, opts, url, f"{label}x{k}") for k in range(opts.repeats)]
    size.figures["pipeline events/s"] = statistics.median(drains)
    customer, event_id = "cus_bench00042", f"evt_p{label}x0_{opts.events // 2:07d}"
    size.figures |= queries(space, url, customer)
    size.figures |= commands(env, customer)
    size.figures |= console(env, event_id, customer)
    say(f"growth: {size.rows:,} rows:", {k: round(v, 1) for k, v in size.figures.items()})


def run_growth_bench(space: Space, opts: Options) -> Growth:
    growth, url, filled = Growth(), space.database("growth"), 0
    try:
        for index, rows in enumerate(opts.size_list):
            size = Size(rows, fill_s=fill(url, filled, rows) if rows > filled else 0.0)
            filled = max(filled, rows)
            say(f"growth: {rows:,} rows filled in {size.fill_s:.0f} s")
            measure(space, opts, url, size, index)
            growth.sizes.append(size)
    finally:
        space.drop(url)
    plot(growth)
    return growth


def plot(growth: Growth) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [max(1, s.rows) for s in growth.sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name in growth.sizes[0].figures:
        ys = [s.figures[name] for s in growth.sizes]
        if name in THROUGHPUTS:
            left.plot(xs, [y / ys[0] if ys[0] else 0 for y in ys], marker="o", label=name)
        elif "(command)" not in name:
            right.plot(xs, ys, marker="o", label=name)
    left.set(xscale="log", ylabel="ratio to size 0", title="throughput", ylim=(0, 1.5))
    right.set(xscale="log", yscale="log", ylabel="ms (median)", title="queries and pages")
    right.axhline(QUERY_MS, color="red", linestyle=":")
    for ax in (left, right):
        ax.set_xlabel("stripe_events rows (0 shown at 1)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(growth.plot, dpi=90)
    plt.close(fig)


def targets(growth: Growth) -> list[Target]:
    last, found = growth.sizes[-1], []
    for name in THROUGHPUTS:
        ratio = growth.ratio(name)
        shown = f"{ratio:.2f}x at {last.rows:,} rows"
        found.append(Target(f"growth: {name}", ">= 0.9x of size 0", shown, ratio >= 0.9))
    slow = {k: v for k, v in last.figures.items() if k.endswith(" ms") and _is_query(k)}
    worst = max(slow, key=slow.__getitem__)
    shown = f"slowest {worst.removesuffix(' ms')} {slow[worst]:.1f} ms at {last.rows:,} rows"
    found.append(Target("growth: queries and pages", f"< {QUERY_MS} ms each", shown,
                        slow[worst] < QUERY_MS))  # fmt: skip
    return found


def _is_query(name: str) -> bool:
    return "(command)" not in name and "p99" not in name


def section(growth: Growth) -> list[str]:
    sizes = growth.sizes
    rows = [
        [name, *(f"{s.figures[name]:,.1f}" for s in sizes), f"{growth.ratio(name):.2f}x"]
        for name in sizes[0].figures
    ]
    header = "figure|" + "".join(f"{s.rows:,} rows:|" for s in sizes) + "last / first:"
    fills = ", ".join(f"{s.rows:,} rows in {s.fill_s:.0f} s" for s in sizes if s.fill_s)
    return [
        "## Growth\n",
        "One database filled in SQL by `bench/fill.py` (payloads templated from bench/events.py's "
        "events; one customer per 20 events, `created` over 90 days, nearly all processed with "
        "their attempt rows, one in 10,000 dead, one in 100,000 pending), incrementally, with "
        f"`VACUUM ANALYZE` after each fill ({fills or 'no fill'}). At each size: wrk runs of "
        "ours (their rows deleted and vacuumed afterwards) and drains of the pipeline's events "
        "through real workers (median of the `--repeats` runs of each), then medians of 5 "
        "timings: one sweeper pass (`Sweeper.run_pass`, its hooks included), the CLI commands' "
        "store calls in this process (`... ms`), the real commands as subprocesses "
        "(`(command)`: Python start-up and imports included, about the `--help` row), and the "
        "console's pages over HTTP with the token.\n",
        *table(header, rows),
        f"Plot: `{growth.plot.relative_to(growth.plot.parents[1])}`. Sizes are measured one "
        "after another on a shared machine: a throughput ratio below 0.9 may be the machine's "
        "load at the time; the query timings are what the indexes keep flat.\n",
    ]
