"""Growth benchmark: the same figures as `stripe_events` grows (0, 1M, 10M rows by default),
filled in SQL (bench/fill.py) in one database, each size measured after VACUUM ANALYZE:
receiver and pipeline throughput, the sweeper's pass, the CLI's queries and the console's pages.
Throughputs are compared with a fresh empty database measured alternately beside each size
(bench/growth_runs.py); at the largest size they should hold and the queries stay fast."""

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

from bench.fill import fill
from bench.growth_runs import THROUGHPUTS, alternate
from bench.report import Target, table
from bench.space import Options, Space, say
from shared.broker import make_broker
from shared.settings import Settings
from stripe_ingest.cli import store
from tests.procs import run_console
from worker.sweeper import Sweeper, load_hooks

PLOT = Path(__file__).with_name("growth.png")
TOKEN = "bench-console-token-0123456789abcdef"
REPEATS = 5
THROUGHPUT_MIN = 0.9  # of the empty database beside it, at the largest size
QUERY_MS = 100  # every query and page at the largest size


@dataclass
class Size:
    rows: int
    fill_s: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)  # median of the repetitions
    # The alternating runs' figures in a fresh empty database, measured beside `figures`.
    baseline: dict[str, float] = field(default_factory=dict)


@dataclass
class Growth:
    sizes: list[Size] = field(default_factory=list)
    plot: Path = PLOT

    def ratio(self, name: str, size: Size | None = None) -> float:
        """`size`'s figure (default: the last size's) over its baseline: the empty database
        measured beside it for the alternating runs' figures, size 0's figure for the others."""
        size = size or self.sizes[-1]
        base = size.baseline.get(name, self.sizes[0].figures[name])
        return size.figures[name] / base if base else 0.0


def timed(call: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median ms of `repeats` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


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
    size.figures, size.baseline = alternate(space, opts, url, label)
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
        if name in THROUGHPUTS:
            ys = [growth.ratio(name, s) for s in growth.sizes]
            left.plot(xs, ys, marker="o", label=name)
        elif "(command)" not in name:
            right.plot(xs, [s.figures[name] for s in growth.sizes], marker="o", label=name)
    left.set(xscale="log", ylabel="ratio to an empty db measured beside it", ylim=(0, 1.5))
    left.set_title("throughput (alternating runs, same window)")
    left.axhline(THROUGHPUT_MIN, color="red", linestyle=":")
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
    goal = f">= {THROUGHPUT_MIN}x of an empty db beside it"
    for name in THROUGHPUTS:
        ratio, unit = growth.ratio(name), name.rpartition(" ")[2]
        shown = f"{ratio:.2f}x at {last.rows:,} rows ({last.figures[name]:,.0f} vs "
        shown += f"{last.baseline[name]:,.0f} {unit}, alternating, medians)"
        found.append(Target(f"growth: {name}", goal, shown, ratio >= THROUGHPUT_MIN))
    slow = {k: v for k, v in last.figures.items() if k.endswith(" ms") and _is_query(k)}
    worst = max(slow, key=slow.__getitem__)
    shown = f"slowest {worst.removesuffix(' ms')} {slow[worst]:.1f} ms at {last.rows:,} rows"
    found.append(Target("growth: queries and pages", f"< {QUERY_MS} ms each", shown,
                        slow[worst] < QUERY_MS))  # fmt: skip
    return found


def _is_query(name: str) -> bool:
    return "(command)" not in name and "p99" not in name


def _rows(growth: Growth) -> list[list[str]]:
    """Each figure, and under each of the alternating runs' the empty database beside it (with
    the size's ratio to it): the ratio column divides by that, not by the first size."""
    sizes, rows = growth.sizes, []
    for name in sizes[0].figures:
        rows.append([name, *(f"{s.figures[name]:,.1f}" for s in sizes),
                     f"{growth.ratio(name):.2f}x"])  # fmt: skip
        if name in sizes[0].baseline:
            cells = (f"{s.baseline[name]:,.1f} ({growth.ratio(name, s):.2f}x)" for s in sizes)
            rows.append([f"{name}, empty db beside it (ratio)", *cells, ""])
    return rows


def section(growth: Growth) -> list[str]:
    sizes = growth.sizes
    header = "figure|" + "".join(f"{s.rows:,} rows:|" for s in sizes) + "last size's ratio:"
    fills = ", ".join(f"{s.rows:,} rows in {s.fill_s:.0f} s" for s in sizes if s.fill_s)
    return [
        "## Growth\n",
        "One database filled in SQL by `bench/fill.py` (payloads templated from bench/events.py's "
        "events; one customer per 20 events, `created` over 90 days, nearly all processed with "
        "their attempt rows, one in 10,000 dead, one in 100,000 pending), incrementally, with "
        f"`VACUUM ANALYZE` after each fill ({fills or 'no fill'}). At each size, `--repeats` "
        "wrk runs of ours (a server of its own per run, warmed up; their rows deleted and "
        "vacuumed afterwards), then `--repeats` drains of the pipeline's events through real "
        "workers, each repeat once in the grown database and once in a fresh empty one "
        "(migrated, dropped afterwards): alternating, so both see the machine in the same "
        "window. The median of each is shown, the empty database's in the `empty db beside it` "
        "rows; the ratio of those figures is the grown database's median over the empty one's "
        "(at 0 rows both are empty: how far two equal databases come apart). Then medians of 5 "
        "timings: one sweeper pass (`Sweeper.run_pass`, its hooks included), the CLI commands' "
        "store calls in this process (`... ms`), the real commands as subprocesses "
        "(`(command)`: Python start-up and imports included, about the `--help` row), and the "
        "console's pages over HTTP with the token; their ratio is the last size's over the "
        "first's.\n",
        *table(header, _rows(growth)),
        f"Plot: `{growth.plot.relative_to(growth.plot.parents[1])}`. Sizes are measured one "
        "after another, tens of minutes apart on a shared machine: the timings' ratio to the "
        "first size includes the machine's drift between them (their target is in ms); the "
        "throughput ratios compare runs of the same window instead.\n",
    ]
