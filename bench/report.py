"""Targets, verdicts and bench/RESULTS.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.backfill import Backfill
from bench.events import BenchEvent
from bench.pipeline import COMMANDS, PHASES, Phase, Pipeline
from bench.receiver import SERVERS, ServerRun
from bench.report_ops import backfill_lines, backfill_targets, retention_lines, retention_targets
from bench.report_scale import Catchup, Hosts, catchup_lines, hosts_lines, scale_targets
from bench.retention import Retention
from bench.space import Options
from bench.system import CpuShare
from bench.verdict import LATENCIES, VERDICT, Target, table

__all__ = ["VERDICT", "Results", "Target", "render", "table", "targets"]

WEB_RSS_MB, WORKER_RSS_MB = 150, 200


@dataclass
class Results:
    opts: Options
    argv: str
    machine: dict[str, str]
    load: list[str]  # before, after
    started: datetime
    receiver_runs: list[ServerRun]  # in the order they ran
    receiver_events: Sequence[BenchEvent]
    pipeline: Pipeline
    finished: datetime = field(default_factory=lambda: datetime.now(UTC))
    backfill: Backfill | None = None
    retention: Retention | None = None
    hosts: Hosts | None = None  # bench/hosts.py
    catchup: Catchup | None = None  # bench/catchup.py
    more_targets: list[Target] = field(default_factory=list)  # and sections: bench/growth.py
    more_sections: list[str] = field(default_factory=list)

    def runs_of(self, name: str) -> list[ServerRun]:
        return [r for r in self.receiver_runs if r.name == name]

    def median(self, name: str) -> ServerRun:
        runs = sorted(self.runs_of(name), key=lambda r: r.wrk.rps)
        return runs[(len(runs) - 1) // 2]

    @property
    def medians(self) -> list[ServerRun]:
        return [self.median(name) for name in SERVERS]

    def row(self, x: ServerRun) -> list[object]:
        median = " (median)" if x in self.medians and len(self.runs_of(x.name)) > 1 else ""
        return [
            x.name, f"{x.repeat}{median}", f"{x.wrk.rps:,.0f}",
            *(f"{x.wrk.ms(p) or 0:.1f}" for p in LATENCIES),
            x.wrk.n("non_2xx"), x.wrk.n("socket_errors"), f"{x.memory.tree_mb:.0f}",
        ]  # fmt: skip

    def phases(self, *names: str) -> list[Phase]:
        return [p for p in self.pipeline.phases if p.name in names]


def targets(r: Results) -> list[Target]:
    found: list[Target] = []

    def add(name: str, goal: str, measured: str, passed: bool) -> None:
        found.append(Target(name, goal, measured, passed))

    ours, plain, every = r.median("ours"), r.median("straightforward"), r.runs_of("ours")
    ratio = ours.wrk.rps / plain.wrk.rps
    shown = f"{ratio:.2f}x ({ours.wrk.rps:,.0f} vs {plain.wrk.rps:,.0f} req/s"
    shown += f", median runs of {len(every)} each)" if len(every) > 1 else ")"
    add("receiver throughput", ">= 3x straightforward", shown, ratio >= 3)
    p99s = sorted(x.wrk.ms("p99") or 0.0 for x in every)
    p99, listed = p99s[(len(p99s) - 1) // 2], ", ".join(f"{v:.1f}" for v in p99s)
    shown = f" (median of {len(p99s)} runs: {listed})" if len(p99s) > 1 else ""
    add("receiver p99", "<= 25 ms", f"{p99:.1f} ms{shown}", p99 <= 25)
    # The scale issue's targets: against the bare server, and p99 in every run.
    bare = r.median("bare")
    ratio = ours.wrk.rps / bare.wrk.rps
    shown = f"{ratio:.2f}x ({ours.wrk.rps:,.0f} vs {bare.wrk.rps:,.0f} req/s)"
    add("receiver vs bare Starlette", ">= 0.5x", shown, ratio >= 0.5)
    add("receiver p99, every run", "<= 25 ms", f"worst {p99s[-1]:.1f} ms", p99s[-1] <= 25)
    bad = sum(x.wrk.n("non_2xx") for x in every)
    errors = sum(x.wrk.n("socket_errors") for x in every)
    shown = f"{bad} non-2xx, {errors} socket errors (all runs)"
    add("receiver errors", "no non-2xx", shown, bad + errors == 0)
    durable = all(x.durable for x in every)
    shown = "all checks pass (all runs)" if durable else "see the checks below"
    add("receiver durability", "every 200 stored once and enqueued", shown, durable)
    drain, trivial = r.pipeline.phase("drain"), r.pipeline.phase("trivial")
    drains = r.phases("drain")
    ratio, n = drain.events_per_s / trivial.events_per_s, len(drains)
    shown = f"{ratio:.2f}x ({drain.events_per_s:,.0f} vs {trivial.events_per_s:,.0f} events/s"
    shown += f", median runs of {n} each)" if n > 1 else ")"
    passed = ratio >= 0.7 and not any(p.timed_out for p in drains)
    add("pipeline throughput", ">= 0.7x trivial actor", shown, passed)
    bad = sum(p.order_violations or 0 for p in drains)
    shown = f"{bad} violations" + (" (all drain runs)" if len(drains) > 1 else "")
    add("pipeline ordering", "process_seq follows creation order per key", shown, bad == 0)
    half = r.pipeline.phase("half")
    p99 = half.latency_ms[1] if half.latency_ms else 1e9
    passed = p99 <= 500 and not half.timed_out
    add("pipeline p99 at half load", "<= 500 ms receipt-to-finished", f"{p99:.0f} ms", passed)
    full = r.pipeline.phase("full")
    shown = f"{full.events_per_s:,.0f} events/s (full load, receiver and workers together)"
    add("pipeline rate", ">= 2,500 events/s", shown, full.events_per_s >= 2500)
    add("pipeline p99 at half load, scale", "<= 100 ms", f"{p99:.0f} ms", p99 <= 100)
    live = r.phases("drain", "full", "half")
    peak = max(m.tree_mb for m in [p.memory["web"] for p in live] + [x.memory for x in every])
    add("web memory", f"<= {WEB_RSS_MB} MB", f"{peak:.0f} MB", peak <= WEB_RSS_MB)
    peak = max(p.memory["worker"].largest_mb for p in live)
    shown = f"{peak:.0f} MB (tree {max(p.memory['worker'].tree_mb for p in live):.0f} MB)"
    add("worker memory", f"<= {WORKER_RSS_MB} MB per process", shown, peak <= WORKER_RSS_MB)
    found += retention_targets(r.retention) if r.retention else []
    found += [Target(*t) for t in scale_targets(r.hosts, r.catchup)]
    found += backfill_targets(r.backfill) if r.backfill else []
    return found + r.more_targets


def cpu_line(cpu: CpuShare | None) -> str:
    if cpu is None or not cpu.wall:
        return "-"
    busy = sorted((k for k in cpu.seconds if cpu.percent(k) >= 1), key=cpu.percent, reverse=True)
    line = ", ".join(f"{k} {cpu.percent(k):.0f}%" for k in busy)
    line += f"; idle {100 * cpu.idle / cpu.wall:.0f}% (of one core; 2 cores = 200%)"
    top = sorted(cpu.others.items(), key=lambda kv: -kv[1])[:3]
    if cpu.percent("other") >= 10 and top:
        line += "; other: " + ", ".join(f"{k} {100 * s / cpu.wall:.0f}%" for k, s in top)
    return line


def _per(cpu: CpuShare, category: str, units: int) -> str:
    """CPU µs of `category` per unit of work."""
    return f"{cpu.seconds.get(category, 0.0) / units * 1e6:,.0f}"


def limits(r: Results) -> list[str]:
    """CPU per unit of work, who was busy: derived from the runs."""
    lines = ["## What limits it\n"]
    lines.append("Derived from the runs below (CPU from /proc per process; 2 cores = 200%).\n")
    for x in r.medians:
        cpu, name = x.cpu, x.name
        per = {k: _per(cpu, k, x.wrk.n("requests")) for k in (name, "postgres", "redis", "wrk")}
        state = "neither it nor the machine is CPU-saturated: requests wait (I/O, commits)"
        if 100 * cpu.idle / cpu.wall < 15:
            state = "the machine's cores are saturated"
        if cpu.percent(name) >= 85:
            state = "its one event loop is saturated (CPU-bound)"
        lines.append(
            f"- receiver {name}{' (median run)' if len(r.runs_of(name)) > 1 else ''}: "
            f"{x.wrk.rps:,.0f} req/s; CPU per request: server {per[name]} µs, PostgreSQL "
            f"{per['postgres']} µs, Redis {per['redis']} µs, wrk {per['wrk']} µs (with loading "
            f"its request files); server at {cpu.percent(name):.0f}% of a core, machine busy "
            f"{100 * cpu.busy / cpu.wall:.0f}% of 200%: {state}."
        )
    for p in r.pipeline.phases:
        if p.cpu and p.finished:
            per = {k: _per(p.cpu, k, p.cpu_events or p.finished) for k in ("workers", "postgres")}
            lines.append(
                f"- pipeline {p.label}: {p.events_per_s:,.0f} events/s; CPU per event: workers "
                f"{per['workers']} µs, PostgreSQL {per['postgres']} µs; workers at "
                f"{p.cpu.percent('workers'):.0f}% of a core (2 processes)."
            )
    return [*lines, ""]


def receiver(r: Results) -> list[str]:
    o, medians, ours = r.opts, r.medians, r.median("ours")
    out = [
        "## Receiver\n",
        f"Each server is one uvicorn process on 127.0.0.1, driven by wrk with {o.threads} threads "
        f"and {o.connections} connections for {o.duration:.0f} s, after a short warm-up with "
        "events of its own. Every request is a distinct, freshly signed event "
        "(`Stripe-Signature` over the exact body, timestamp within the 300 s tolerance). "
        "Latency is wrk's (closed loop, from write to full response).\n",
    ]
    if len(r.receiver_runs) > len(medians):
        out.append(
            "The straightforward server and ours ran several times, alternating (bare, the "
            "ceiling, once), each run from a quiet machine (CHECKPOINT, sync, idle); the median "
            "run of each server by requests/s is marked and used for the ratios. Every run:\n"
        )
    header = "server|run|req/s:|" + "".join(f"{p} ms:|" for p in LATENCIES)
    out += table(header + "non-2xx:|socket errors:|peak RSS MB:", map(r.row, r.receiver_runs))
    ratios = [
        f"{ours.wrk.rps / x.wrk.rps:.2f}x the {x.name} server's requests/s (p99 "
        f"{(ours.wrk.ms('p99') or 0) / (x.wrk.ms('p99') or 1):.2f}x)"
        for x in (r.median("straightforward"), r.median("bare"))
    ]
    out.append("Ours: " + "; ".join(ratios) + ".\n")
    out.append("Where the CPU went during each run (CPU seconds / wall seconds, per category):\n")
    out += [f"- {x.name} run {x.repeat}: {cpu_line(x.cpu)}" for x in r.receiver_runs] + [""]
    out.append(
        "Durability, checked after each run against the server's own database and namespace:\n"
    )
    rows = [(f"{x.name} run {x.repeat}", *c) for x in r.receiver_runs for c in x.checks]
    out += table(
        "server|check|verdict|detail", [(run, c, VERDICT[ok], d) for run, c, ok, d in rows]
    )
    commands = [f"# {x.name}\n{x.command}\n{x.wrk.command}" for x in medians]
    out += ["Commands:\n", "```", *commands, "```\n"]
    out += ["<details><summary>wrk output for ours</summary>\n\n```", ours.wrk.stdout.strip()]
    return [*out, "```\n</details>\n"]


def _phase_row(p: Phase) -> list[object]:
    http = f"{p.send.rate:,.0f}/s, p99 {p.send.p99_ms():.1f} ms" if p.send else "-"
    offered = f"{p.offered_rate:,.0f}/s" if p.offered_rate else "max"
    status = ", ".join(f"{k} {v}" for k, v in sorted(p.statuses.items()))
    return [
        p.label, p.events, offered if p.name in ("full", "half") else "-", http,
        f"{p.events_per_s:,.0f}", " / ".join(f"{v:.0f}" for v in p.latency_ms) or "-",
        " / ".join(f"{v:.1f}" for v in p.finish_timeline_s) or "-", f"{p.wall_s:.1f}",
        status + (" (TIMED OUT)" if p.timed_out else ""),
    ]  # fmt: skip


def pipeline(r: Results) -> list[str]:
    pipe = r.pipeline
    out = [
        "## Pipeline\n",
        f"{r.opts.events} events (500 customers) per phase; 2 worker processes "
        "(`WORKER_PROCESSES=2`, default threads) with the billing mirror on; each phase in a "
        "fresh database and Redis namespace. events/s and latency come from the rows "
        "(PostgreSQL's clock): drain and trivial from first to last `processed_at`; full and "
        "half from first `received_at` to last `processed_at`; latency is "
        "`processed_at - received_at`.\n",
        *(f"- **{name}**: {what}" for name, what in PHASES.items()),
        "",
    ]
    if len(r.phases("drain")) > 1:
        out.append(
            "Drain and trivial ran several times, alternating, each from a quiet machine "
            "(CHECKPOINT, sync, idle); the median run of each by events/s is compared.\n"
        )
    header = "phase|events:|offered:|HTTP (sender)|events/s:|latency ms p50 / p99 / max"
    header += "|finished 50 / 90 / 99 / 100% after s|wall s:|statuses"
    out += table(header, map(_phase_row, pipe.phases))
    drain, trivial = pipe.phase("drain"), pipe.phase("trivial")
    out.append(
        f"Workers vs trivial actor: {drain.events_per_s / trivial.events_per_s:.2f}x. "
        "Ordering check on the drain (every key's `process_seq` in creation order): "
        f"{drain.order_violations} violations.\n"
    )
    for p in pipe.phases:
        rows = ", ".join(f"{k} {v}" for k, v in p.mirror_rows.items())
        out += [f"- {p.label}: mirror rows {rows}"] if rows else []
        out += [f"- {p.label}: {p.note}"] if p.note else []
    out += ["", "Where the CPU went:\n", *(f"- {p.label}: {cpu_line(p.cpu)}" for p in pipe.phases)]
    return [*out, "", "Commands:\n", "```", *(f"{k}: {v}" for k, v in COMMANDS.items()), "```\n"]


def memory(r: Results) -> list[str]:
    rows = [(f"web: {x.name}", "receiver", x.memory) for x in r.medians]
    rows += [(k, f"pipeline {p.name}", m) for p in r.pipeline.phases for k, m in p.memory.items()]
    header = "process|run|peak RSS MB (largest process):|tree MB:|largest process"
    cells = [(k, run, f"{m.largest_mb:.0f}", f"{m.tree_mb:.0f}", f"`{m.largest_command[:80]}`")
             for k, run, m in rows]  # fmt: skip
    return [
        "## Peak memory\n",
        "VmHWM (peak resident set) from /proc/<pid>/status for each process of a tree, read at "
        "the end of each run; a tree's figure is the sum of its processes' peaks.\n",
        *table(header, cells),
    ]


def events(r: Results) -> list[str]:
    out = ["## Events\n"]
    for label, found in (("receiver", r.receiver_events), ("pipeline", r.pipeline.events)):
        sizes, customers = sorted(len(e.body) for e in found), {e.customer for e in found} - {None}
        out.append(
            f"- {label}: {len(found):,} events prepared, bodies {sizes[0]} to {sizes[-1]} bytes "
            f"(median {sizes[len(sizes) // 2]}, mean {sum(sizes) / len(sizes):.0f}), "
            f"{len({e.type for e in found})} types, {len(customers)} customers"
        )
    out.append(
        "- built by `bench/events.py` from corpus shapes (tests/fixtures/stripe-corpus): ids, "
        "customers, subscription/invoice/charge ids rewritten, `created` increasing (8 events per "
        "second, so ties occur), pretty-printed like Stripe's bodies and padded through "
        "`metadata` to 1.5-6 KB.\n"
    )
    return out


def render(r: Results) -> str:
    out = ["# Benchmark results\n"]
    if r.opts.quick:
        out.append(
            "> **Quick run** (`--quick`): seconds-long runs on a possibly busy machine, to check "
            "that the harness works. These are not the figures of record: run `make bench` on a "
            "quiet machine.\n"
        )
    out.append(
        f"Written by `{r.argv}` from {r.started:%Y-%m-%d %H:%M:%S} to {r.finished:%H:%M:%S} UTC. "
        "Every figure below comes from that command; rerun it to refresh this file (do not edit "
        "by hand).\n"
    )
    out += ["## Machine\n", *(f"- {k}: {v}" for k, v in r.machine.items())]
    out += [f"- load average before / after: {' / '.join(r.load)}", "", "## Targets\n"]
    out += table("target|goal|measured|verdict", ([*t[:3], VERDICT[t.passed]] for t in targets(r)))
    for section in (limits, receiver, pipeline, memory, events):
        out += section(r)
    out += backfill_lines(r.backfill) if r.backfill else []
    out += retention_lines(r.retention) if r.retention else []
    out += hosts_lines(r.hosts) + catchup_lines(r.catchup)
    out += r.more_sections
    make = "make bench            # services up, then .venv/bin/python -m bench (defaults)"
    return "\n".join([*out, "## Reproduce\n", "```sh", make, r.argv, "```", ""])
