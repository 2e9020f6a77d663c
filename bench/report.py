"""Targets, verdicts and `bench/RESULTS.md`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.cpu import CpuShare
from bench.events import BenchEvent, size_summary
from bench.pipeline import Phase, PipelineReport
from bench.profile import Profile
from bench.receiver import ServerRun

WEB_RSS_MB = 150
WORKER_RSS_MB = 200
Write = Callable[[str], None]


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    passed: bool | None  # None: not measured


@dataclass
class Results:
    argv: str
    started: datetime
    finished: datetime | None = None
    quick: bool = False
    machine: dict[str, str] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""
    duration: float = 0.0
    connections: int = 32
    threads: int = 2
    # Each server's median run (by requests/s), and every run in the order they ran.
    receiver: list[ServerRun] = field(default_factory=list)
    receiver_runs: list[ServerRun] = field(default_factory=list)
    receiver_events: Sequence[BenchEvent] = ()
    pipeline: PipelineReport | None = None
    pipeline_events: Sequence[BenchEvent] = ()
    profiles: list[Profile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run(self, name: str) -> ServerRun | None:
        return next((r for r in self.receiver if r.name == name), None)

    def runs_of(self, name: str) -> list[ServerRun]:
        return [r for r in self.receiver_runs or self.receiver if r.name == name]


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def web_peak_mb(results: Results) -> float | None:
    peaks = []
    ours = results.run("ours")
    if ours is not None:
        peaks.append(ours.memory.tree_mb)
    if results.pipeline:
        peaks += [p.web_memory.tree_mb for p in results.pipeline.phases if p.web_memory]
    return max(peaks) if peaks else None


def worker_peak(results: Results) -> tuple[float, float, str] | None:
    """Largest single worker process, whole worker tree, and the largest one's command."""
    if not results.pipeline:
        return None
    phases = [
        p
        for p in results.pipeline.phases
        if p.worker_memory and p.name in ("drain", "full", "half")
    ]
    if not phases:
        return None
    largest = max(phases, key=lambda p: p.worker_memory.largest_mb if p.worker_memory else 0)
    assert largest.worker_memory is not None
    tree = max(p.worker_memory.tree_mb for p in phases if p.worker_memory)
    return largest.worker_memory.largest_mb, tree, largest.worker_memory.largest_command()


def targets(results: Results) -> list[Target]:
    found: list[Target] = []
    ours, plain = results.run("ours"), results.run("straightforward")
    if ours and plain:
        ratio = ours.wrk.rps / plain.wrk.rps if plain.wrk.rps else 0.0
        runs = len(results.runs_of("ours"))
        found.append(
            Target(
                "receiver throughput",
                ">= 3x straightforward",
                f"{ratio:.2f}x ({ours.wrk.rps:,.0f} vs {plain.wrk.rps:,.0f} req/s"
                + (f", median runs of {runs} each)" if runs > 1 else ")"),
                ratio >= 3,
            )
        )
    if ours:
        all_ours = results.runs_of("ours")
        p99s = sorted(r.wrk.latency_us.get("p99", 0.0) for r in all_ours)
        p99 = p99s[(len(p99s) - 1) // 2] if p99s else None
        shown = f"{_ms(p99)} ms"
        if len(p99s) > 1:
            shown += f" (median of {len(p99s)} runs: {', '.join(_ms(v) for v in p99s)})"
        found.append(Target("receiver p99", "<= 25 ms", shown, p99 is not None and p99 <= 25_000))
        non_2xx = sum(r.wrk.non_2xx for r in all_ours)
        socket_errors = sum(r.wrk.socket_errors for r in all_ours)
        found.append(
            Target(
                "receiver errors",
                "no non-2xx",
                f"{non_2xx} non-2xx, {socket_errors} socket errors (all runs)",
                non_2xx + socket_errors == 0,
            )
        )
        durable = all(r.durable for r in all_ours)
        found.append(
            Target(
                "receiver durability",
                "every 200 stored once and enqueued",
                "all checks pass (all runs)" if durable else "see the checks below",
                durable,
            )
        )
    pipe = results.pipeline
    drain = pipe.phase("drain") if pipe else None
    trivial = pipe.phase("trivial") if pipe else None
    half = pipe.phase("half") if pipe else None
    if pipe and drain and trivial and trivial.events_per_s:
        ratio = drain.events_per_s / trivial.events_per_s
        runs = len(pipe.runs_of("drain"))
        found.append(
            Target(
                "pipeline throughput",
                ">= 0.7x trivial actor",
                f"{ratio:.2f}x ({drain.events_per_s:,.0f} vs {trivial.events_per_s:,.0f} events/s"
                + (f", median runs of {runs} each)" if runs > 1 else ")"),
                ratio >= 0.7 and not any(p.timed_out for p in pipe.runs_of("drain")),
            )
        )
    checked = [p.order_violations for p in pipe.runs_of("drain")] if pipe else []
    if checked and all(v is not None for v in checked):
        violations = sum(v or 0 for v in checked)
        found.append(
            Target(
                "pipeline ordering",
                "process_seq follows creation order per key",
                f"{violations} violations" + (" (all drain runs)" if len(checked) > 1 else ""),
                violations == 0,
            )
        )
    if half:
        p99 = half.latency_p99_ms
        found.append(
            Target(
                "pipeline p99 at half load",
                "<= 500 ms receipt-to-finished",
                "-" if p99 is None else f"{p99:.0f} ms",
                p99 is not None and p99 <= 500 and not half.timed_out,
            )
        )
    web = web_peak_mb(results)
    if web is not None:
        found.append(
            Target("web memory", f"<= {WEB_RSS_MB} MB", f"{web:.0f} MB", web <= WEB_RSS_MB)
        )
    worker = worker_peak(results)
    if worker is not None:
        found.append(
            Target(
                "worker memory",
                f"<= {WORKER_RSS_MB} MB per process",
                f"{worker[0]:.0f} MB (tree {worker[1]:.0f} MB)",
                worker[0] <= WORKER_RSS_MB,
            )
        )
    return found


def _cpu_line(share: CpuShare | None) -> str:
    if share is None or not share.wall:
        return "-"
    order = sorted(share.seconds, key=lambda k: -share.seconds[k])
    parts = [f"{k} {share.percent(k):.0f}%" for k in order if share.percent(k) >= 1]
    idle = 100 * share.idle / share.wall
    line = ", ".join(parts) + f"; idle {idle:.0f}% (of one core; 2 cores = 200%)"
    top = sorted(share.others.items(), key=lambda kv: -kv[1])[:3]
    named = [f"{name} {100 * sec / share.wall:.0f}%" for name, sec in top if share.wall]
    if share.percent("other") >= 10 and named:
        line += f"; other: {', '.join(named)}"
    return line


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "not measured"}[passed]


def render(results: Results) -> str:
    out: list[str] = []
    w = out.append
    finished = results.finished or datetime.now(UTC)
    w("# Benchmark results\n")
    if results.quick:
        w(
            "> **Quick run** (`--quick`): seconds-long runs on a possibly busy machine, to check "
            "that the harness works. These are not the figures of record: run `make bench` on a "
            "quiet machine.\n"
        )
    w(
        f"Written by `{results.argv}` from {results.started:%Y-%m-%d %H:%M:%S} to "
        f"{finished:%H:%M:%S} UTC. Every figure below comes from that command; rerun it to "
        "refresh this file (do not edit by hand).\n"
    )
    w("## Machine\n")
    for key, value in results.machine.items():
        w(f"- {key}: {value}")
    w(f"- load average before / after: {results.load_before} / {results.load_after}")
    w("")
    w("## Targets\n")
    w("| target | goal | measured | verdict |")
    w("| --- | --- | --- | --- |")
    for target in targets(results):
        w(f"| {target.name} | {target.goal} | {target.measured} | {_verdict(target.passed)} |")
    w("")
    for note in results.notes:
        w(f"- {note}")
    if results.notes:
        w("")
    _limits(results, w)
    _receiver(results, w)
    _pipeline(results, w)
    _memory(results, w)
    _profiles(results, w)
    _events(results, w)
    w("## Reproduce\n")
    w("```sh")
    w("make bench            # services up, then .venv/bin/python -m bench (defaults)")
    w(f"{results.argv}")
    w("```")
    w("")
    return "\n".join(out)


def _receiver(results: Results, w: Write) -> None:
    if not results.receiver:
        return
    w("## Receiver\n")
    w(
        f"Each server is one uvicorn process on 127.0.0.1, driven by wrk with {results.threads} "
        f"threads and {results.connections} connections for {results.duration:.0f} s, after a "
        "short warm-up with events of its own. Every request is a distinct, freshly signed event "
        "(`Stripe-Signature` over the exact body, timestamp within the 300 s tolerance). "
        "Latency is wrk's (closed loop, from write to full response).\n"
    )
    every = results.receiver_runs or results.receiver
    if len(every) > len(results.receiver):
        w(
            "The straightforward server and ours ran several times, alternating (bare, the "
            "ceiling, once), each run from a quiet machine (CHECKPOINT, sync, idle); the median "
            "run of each server by requests/s is marked and used for the ratios. Every run:\n"
        )
    w(
        "| server | run | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | non-2xx "
        "| socket errors | peak RSS MB |"
    )
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in every:
        lat = run.wrk.latency_us
        median = any(run is r for r in results.receiver) and len(results.runs_of(run.name)) > 1
        mark = " (median)" if median else ""
        w(
            f"| {run.name} | {run.repeat}{mark} | {run.wrk.rps:,.0f} | {_ms(lat.get('p50'))} | "
            f"{_ms(lat.get('p90'))} | {_ms(lat.get('p99'))} | {_ms(lat.get('p99.9'))} | "
            f"{_ms(lat.get('max'))} | {run.wrk.non_2xx} | {run.wrk.socket_errors} | "
            f"{_mb(run.memory.tree_mb)} |"
        )
    w("")
    ours, plain, bare = results.run("ours"), results.run("straightforward"), results.run("bare")
    if ours:
        parts = []
        for other in (plain, bare):
            if other and other.wrk.rps:
                p99_other = other.wrk.latency_us.get("p99") or 1
                parts.append(
                    f"{ours.wrk.rps / other.wrk.rps:.2f}x the {other.name} server's requests/s "
                    f"(p99 {ours.wrk.latency_us.get('p99', 0) / p99_other:.2f}x)"
                )
        if parts:
            w("Ours: " + "; ".join(parts) + ".\n")
    w("Where the CPU went during each run (CPU seconds / wall seconds, per category):\n")
    for run in every:
        w(f"- {run.name} run {run.repeat}: {_cpu_line(run.cpu)}")
    w("")
    checked = [r for r in every if r.checks]
    if checked:
        w("Durability, checked after each run against the server's own database and namespace:\n")
        w("| server | check | verdict | detail |")
        w("| --- | --- | --- | --- |")
        for run in checked:
            for check in run.checks:
                w(
                    f"| {run.name} run {run.repeat} | {check.name} | {_verdict(check.passed)} "
                    f"| {check.detail} |"
                )
        w("")
    w("Commands:\n")
    w("```")
    for run in results.receiver:
        w(f"# {run.name}")
        w(run.command)
        w(run.wrk.command)
    w("```\n")
    ours_run = results.run("ours")
    if ours_run:
        w("<details><summary>wrk output for ours</summary>\n\n```")
        w(ours_run.wrk.stdout.strip())
        w("```\n</details>\n")


def _label(phase: Phase) -> str:
    return f"{phase.name} {phase.repeat}" if phase.name in ("drain", "trivial") else phase.name


def _phase_row(phase: Phase) -> str:
    send = phase.send
    http = "-"
    if send is not None:
        http = f"{send.rate:,.0f}/s, p99 {send.percentile_ms(99):.1f} ms"
    offered = f"{phase.offered_rate:,.0f}/s" if phase.offered_rate else "max"
    latency = "-"
    if phase.latency_p50_ms is not None:
        latency = (
            f"{phase.latency_p50_ms:.0f} / {phase.latency_p99_ms or 0:.0f} / "
            f"{phase.latency_max_ms or 0:.0f}"
        )
    timeline = " / ".join(f"{v:.1f}" for v in phase.finish_timeline_s) or "-"
    status = ", ".join(f"{k} {v}" for k, v in sorted(phase.statuses.items()))
    if phase.timed_out:
        status += " (TIMED OUT)"
    name = _label(phase)
    return (
        f"| {name} | {phase.events} | {offered if phase.name in ('full', 'half') else '-'} | "
        f"{http} | {phase.events_per_s:,.0f} | {latency} | {timeline} | {phase.wall_s:.1f} | "
        f"{status} |"
    )


def _pipeline(results: Results, w: Write) -> None:
    pipe = results.pipeline
    if pipe is None:
        return
    w("## Pipeline\n")
    if pipe.skipped:
        w(f"Not run: {pipe.skipped}.\n")
    w(
        f"{pipe.events} events (500 customers) per phase; 2 worker processes "
        "(`WORKER_PROCESSES=2`, default threads) with the billing mirror on; each phase in a "
        "fresh database and Redis namespace. events/s and latency come from the rows "
        "(PostgreSQL's clock): drain and trivial from first to last `processed_at`; full and "
        "half from first `received_at` to last `processed_at`; latency is "
        "`processed_at - received_at`.\n"
    )
    w(
        "- **drain**: all events stored through the receiver while no worker runs, then the "
        "workers start: the workers' own throughput, comparable with the trivial actor.\n"
        "- **trivial**: a copy of the drain database taken before the workers ran and the same "
        "ids enqueued, finished by `bench/servers/trivial_actor.py` (one UPDATE per message, "
        "same processes and threads).\n"
        "- **full**: workers running, events posted as fast as 32 connections go.\n"
        "- **half**: posted open-loop at half of the full-load events/s.\n"
    )
    if len(pipe.runs_of("drain")) > 1:
        w(
            "Drain and trivial ran several times, alternating, each from a quiet machine "
            "(CHECKPOINT, sync, idle); the median run of each by events/s is compared.\n"
        )
    w(
        "| phase | events | offered | HTTP (sender) | events/s | latency ms p50 / p99 / max "
        "| finished 50 / 90 / 99 / 100% after s | wall s | statuses |"
    )
    w("| --- | ---: | ---: | --- | ---: | --- | --- | ---: | --- |")
    for phase in pipe.phases:
        w(_phase_row(phase))
    w("")
    drain, trivial = pipe.phase("drain"), pipe.phase("trivial")
    if drain and trivial and trivial.events_per_s:
        w(
            f"Workers vs trivial actor: {drain.events_per_s / trivial.events_per_s:.2f}x. "
            f"Ordering check on the drain (every key's `process_seq` in creation order): "
            f"{drain.order_violations} violations.\n"
        )
    for phase in pipe.phases:
        if phase.mirror_rows:
            rows = ", ".join(f"{k} {v}" for k, v in phase.mirror_rows.items())
            w(f"- {_label(phase)}: mirror rows {rows}")
        if phase.note:
            w(f"- {_label(phase)}: {phase.note}")
    w("")
    w("Where the CPU went:\n")
    for phase in pipe.phases:
        w(f"- {_label(phase)}: {_cpu_line(phase.cpu)}")
    w("")
    w("Commands:\n")
    w("```")
    for name, command in pipe.commands.items():
        w(f"{name}: {command}")
    w("```\n")


def _memory(results: Results, w: Write) -> None:
    w("## Peak memory\n")
    w(
        "VmHWM (peak resident set) from /proc/<pid>/status, sampled every 0.25 s over each "
        "process tree while it ran; a tree's figure is the sum of its processes' peaks.\n"
    )
    w("| process | run | peak RSS MB (largest process) | tree MB | largest process |")
    w("| --- | --- | ---: | ---: | --- |")
    for run in results.receiver:
        w(
            f"| web: {run.name} | receiver | {_mb(run.memory.largest_mb)} | "
            f"{_mb(run.memory.tree_mb)} | `{run.memory.largest_command()[:80]}` |"
        )
    if results.pipeline:
        for phase in results.pipeline.phases:
            for label, memory in (("web", phase.web_memory), ("worker", phase.worker_memory)):
                if memory is None:
                    continue
                w(
                    f"| {label} | pipeline {phase.name} | {_mb(memory.largest_mb)} | "
                    f"{_mb(memory.tree_mb)} | `{memory.largest_command()[:80]}` |"
                )
    w("")


def _profiles(results: Results, w: Write) -> None:
    if not results.profiles:
        return
    w("## Profiles\n")
    w(
        "Recorded with py-spy (200 Hz, non-blocking, idle threads excluded) under the same load, "
        "in a separate run after the measurements. Shares are of the samples; 'self' is time in "
        "the function itself, 'inclusive' counts its callees too.\n"
    )
    for profile in results.profiles:
        w(f"### {profile.label}\n")
        if profile.error:
            w(f"No profile: {profile.error}\n")
            continue
        w(f"`{profile.command}` ({profile.samples} samples)\n")
        w("| self % | function |")
        w("| ---: | --- |")
        for name, pct in profile.self_top:
            w(f"| {pct:.1f} | `{name}` |")
        w("")
        w("| samples % | innermost function of ours on the stack |")
        w("| ---: | --- |")
        for name, pct in profile.ours_top:
            w(f"| {pct:.1f} | `{name}` |")
        w("")
        w("| inclusive % | function |")
        w("| ---: | --- |")
        for name, pct in profile.total_top:
            w(f"| {pct:.1f} | `{name}` |")
        w("")


def _events(results: Results, w: Write) -> None:
    w("## Events\n")
    for label, events in (
        ("receiver", results.receiver_events),
        ("pipeline", results.pipeline_events),
    ):
        if not events:
            continue
        s = size_summary(events)
        w(
            f"- {label}: {len(events):,} events prepared, bodies {s['min']:.0f} to {s['max']:.0f} "
            f"bytes (median {s['median']:.0f}, mean {s['mean']:.0f}), {s['types']:.0f} types, "
            f"{s['customers']:.0f} customers"
        )
    w(
        "- built by `bench/events.py` from corpus shapes (tests/fixtures/stripe-corpus): ids, "
        "customers, subscription/invoice/charge ids rewritten, `created` increasing (8 events per "
        "second, so ties occur), pretty-printed like Stripe's bodies and padded through "
        "`metadata` to 1.5-6 KB.\n"
    )


def _per_unit(share: CpuShare | None, category: str, units: float, scale: float) -> str:
    if share is None or not units:
        return "-"
    return f"{share.seconds.get(category, 0.0) / units * scale:,.0f}"


def _profile_line(profile: Profile | None) -> str:
    if profile is None or not profile.ours_top:
        return ""
    ours = ", ".join(f"`{n}` {p:.0f}%" for n, p in profile.ours_top[:4])
    hot = ", ".join(f"`{n}` {p:.0f}%" for n, p in profile.self_top[:4])
    return f" Profile, by our innermost function: {ours}. Hottest functions (self): {hot}."


def _limits(results: Results, w: Write) -> None:
    """Plain statements from the measurements: CPU per unit of work, who was busy, where the
    receiver's and workers' time went."""
    lines: list[str] = []
    profiles = {p.label: p for p in results.profiles}
    for run in results.receiver:  # the median runs
        if run.cpu is None or not run.wrk.requests:
            continue
        share, n = run.cpu, run.wrk.requests
        busy = share.busy
        state = (
            "its one event loop is saturated (CPU-bound)"
            if share.percent(run.name) >= 85
            else "the machine's cores are saturated"
            if 100 * share.idle / share.wall < 15
            else "neither it nor the machine is CPU-saturated: requests wait (I/O, commits)"
        )
        per = {k: _per_unit(share, k, n, 1e6) for k in (run.name, "postgres", "redis", "wrk")}
        median = " (median run)" if len(results.runs_of(run.name)) > 1 else ""
        lines.append(
            f"receiver {run.name}{median}: {run.wrk.rps:,.0f} req/s; CPU per request: server "
            f"{per[run.name]} µs, PostgreSQL {per['postgres']} µs, Redis {per['redis']} µs, "
            f"wrk {per['wrk']} µs (with loading its request files); "
            f"server at {share.percent(run.name):.0f}% of a core, machine busy "
            f"{100 * busy / share.wall:.0f}% of 200%: {state}."
            + (_profile_line(profiles.get(f"receiver: {run.name}")) if run.name == "ours" else "")
        )
    pipe = results.pipeline
    if pipe:
        for phase in pipe.phases:
            if phase.cpu is None or not phase.finished:
                continue
            n = phase.cpu_events or phase.finished
            workers = _per_unit(phase.cpu, "workers", n, 1e6)
            postgres = _per_unit(phase.cpu, "postgres", n, 1e6)
            lines.append(
                f"pipeline {_label(phase)}: {phase.events_per_s:,.0f} events/s; CPU per event: "
                f"workers {workers} µs, PostgreSQL {postgres} µs; workers at "
                f"{phase.cpu.percent('workers'):.0f}% of a core (2 processes)."
                + (
                    _profile_line(profiles.get("workers (drain)"))
                    if phase is pipe.phase("drain")
                    else ""
                )
            )
    if not lines:
        return
    w("## What limits it\n")
    w(
        "Derived from the runs below (CPU from /proc per process; 2 cores = 200%) and, where a "
        "target was missed, the py-spy profiles.\n"
    )
    for line in lines:
        w(f"- {line}")
    w("")
