"""The "Many hosts" and "Catch-up" sections of bench/RESULTS.md and their targets (rendered by
bench/report.py, which wraps the targets)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bench.catchup import PER_CUSTOMER, SAMPLE_S, WARMUP_SHARE, Catchup
from bench.hosts import DUPLICATE_SHARE, OVERTAKING_MARGIN_S, THREADS, WEBS, Hosts, HostsRun

__all__ = ["Catchup", "Hosts", "catchup_lines", "hosts_lines", "scale_targets"]
from bench.system import CpuShare

MEMORY_GROWTH_MAX = 1.2
TargetRow = tuple[str, str, str, bool]


def _table(header: str, rows: Iterable[Sequence[object]]) -> list[str]:
    names = header.split("|")
    lines = ["| " + " | ".join(n.removesuffix(":") for n in names) + " |"]
    lines.append("| " + " | ".join("---:" if n.endswith(":") else "---" for n in names) + " |")
    return [*lines, *("| " + " | ".join(map(str, row)) + " |" for row in rows), ""]


def _per_event(cpu: CpuShare | None, category: str, events: int) -> str:
    return f"{cpu.seconds.get(category, 0.0) / events * 1e6:,.0f}" if cpu and events else "-"


def _busy(cpu: CpuShare | None) -> str:
    return f"{100 * cpu.busy / cpu.wall:.0f}%" if cpu and cpu.wall else "-"


def _hosts_row(r: HostsRun) -> list[object]:
    answered = ", ".join(f"{k}: {v}" for k, v in sorted(r.answered.items()))
    return [
        r.label, f"{r.supervisors} x {r.worker_processes // r.supervisors}", r.worker_ids,
        r.events,
        f"{r.requests} ({answered})", f"{r.finished}{' (timed out)' if r.timed_out else ''}",
        f"{r.events_per_s:,.0f}", _per_event(r.cpu, "workers", r.finished),
        _per_event(r.cpu, "postgres", r.finished), _per_event(r.cpu, "web", r.finished),
        _busy(r.cpu), r.overtaken, r.duplicates,
    ]  # fmt: skip


def hosts_lines(h: Hosts | None) -> list[str]:
    if h is None:
        return []
    storm, base = h.storm, h.scale[0] if h.scale else None
    header = "run|supervisors x processes:|worker ids seen:|events:|requests (HTTP answers)"
    header += "|finished:|events/s:"
    header += "|workers µs/event:|PostgreSQL µs/event:|web µs/event:|machine busy:|overtaken:"
    header += "|duplicates:"
    scaling = [
        f"- WORKER_PROCESSES={r.worker_processes}: {r.events_per_s / base.events_per_s:.2f}x"
        for r in h.scale
        if base and base.events_per_s
    ]
    return [
        "## Many hosts\n",
        f"Every run: {WEBS} web processes (`python -m ingest`), worker supervisors "
        f"(`python -m worker`, `WORKER_THREADS={THREADS}`) and one sweeper, each started as its "
        "own host would be (own session and process group, own environment: port, metrics "
        "port), on one PostgreSQL database and one Redis namespace, fresh for each run. The "
        f"same {storm.events:,} events (several per customer) plus {DUPLICATE_SHARE:.0%} sent "
        "twice, shuffled, split across both web processes. **storm**: 3 supervisors of 2 "
        "processes; **scale_N**: one supervisor with `WORKER_PROCESSES=N` (past the machine's "
        "cores, more processes compete for them). events/s: distinct events from "
        "the first `received_at` to the last `processed_at`. Overtaken: pairs of one key where "
        "the later-created event finished first although the earlier one had been stored "
        f"{OVERTAKING_MARGIN_S:.0f} s before it started (tests/reliability/test_storm.py's "
        "check). Duplicates: events with more than one attempt row or attempt, and "
        "notifications sent more than once. Worker ids seen: distinct "
        "`event_attempts.worker` (host:pid of the process that ran the event; no setting names "
        "a worker). CPU per finished event from /proc (PostgreSQL "
        "counts every backend on the machine).\n",
        *_table(header, map(_hosts_row, h.runs)),
        "Throughput against `WORKER_PROCESSES=1`:\n",
        *scaling,
        "",
    ]


def catchup_lines(c: Catchup | None) -> list[str]:
    if c is None:
        return []
    growth, first, last = c.memory_growth()
    peak_redis = max((s.redis_mb for s in c.samples), default=0.0)
    start_redis = c.samples[0].redis_mb if c.samples else 0.0
    peak_queue = max((s.queued for s in c.samples), default=0)
    rate = c.baseline.events_per_s if c.baseline else 0.0
    header = "backlog:|customers:|insert s:|drain s:|events/s:|full pipeline events/s:|ratio:"
    header += "|workers µs/event:|PostgreSQL µs/event:|order violations:|events with > 1 attempt:"
    row = [
        f"{c.backlog:,}", f"{c.customers:,}", f"{c.insert_s:.0f}",
        f"{c.drain_s:.0f}{' (timed out)' if c.timed_out else ''}", f"{c.events_per_s:,.0f}",
        f"{rate:,.0f}", f"{c.ratio:.2f}x", _per_event(c.cpu, "workers", c.finished),
        _per_event(c.cpu, "postgres", c.finished), c.order_violations, c.multi_attempt,
    ]  # fmt: skip
    timeline = [
        f"{s.at_s:.0f} s: {s.finished:,} finished, {s.queued:,} queued, "
        f"Redis {s.redis_mb:.0f} MB, worker RSS "
        + ", ".join(f"{v:.0f}" for v in sorted(s.rss_mb.values()))
        + " MB"
        for s in c.samples[:: max(1, len(c.samples) // 8)]
    ]
    return [
        "## Catch-up\n",
        f"A backlog as after an outage in which Redis lost every message: {c.backlog:,} pending "
        f"events ({PER_CUSTOMER} per customer, bench/events.py bodies rewritten in SQL onto "
        "their own ids and customers) inserted with `INSERT ... SELECT` from `generate_series`, "
        "received during the hour before; then `python -m worker` (the pipeline's processes "
        "and threads) and `python -m worker.sweeper` with its default settings start, and the "
        "sweeper re-sends the backlog as in production. events/s: first to last finish; the "
        "baseline is the pipeline's **full** phase of this run. Order: every key's "
        "`process_seq` in creation order.\n",
        *_table(header, [row]),
        f"- worker RSS (VmRSS, every {SAMPLE_S:.0f} s, after {WARMUP_SHARE:.0%} finished), the "
        f"process that grew most: {first:.0f} MB -> {last:.0f} MB ({growth:.2f}x)",
        f"- Redis used_memory (whole server): {start_redis:.0f} MB at start, peak "
        f"{peak_redis:.0f} MB; peak {peak_queue:,} messages in the queue",
        "- timeline (finished: numbers drawn from `process_seq`, one per finish, read every "
        f"{SAMPLE_S:.0f} s; the table's counts are exact, read once at the end): "
        + "; ".join(timeline),
        "",
    ]


def scale_targets(h: Hosts | None, c: Catchup | None) -> list[TargetRow]:
    found: list[TargetRow] = []
    if h is not None:
        overtaken = sum(r.overtaken or 0 for r in h.runs)
        found.append(("many hosts ordering", "0 overtaken per key", f"{overtaken} (all runs)",
                      overtaken == 0))  # fmt: skip
        dup = sum(r.duplicates for r in h.runs)
        unfinished = sum(r.events - r.finished for r in h.runs)
        shown = f"{dup} duplicates, {unfinished} unfinished (all runs)"
        found.append(("many hosts exactly once", "0 duplicates, all finished", shown,
                      dup == 0 and unfinished == 0))  # fmt: skip
    if c is not None:
        rate = c.baseline.events_per_s if c.baseline else 0.0
        shown = f"{c.ratio:.2f}x ({c.events_per_s:,.0f} vs {rate:,.0f} events/s, {c.backlog:,})"
        found.append(("catch-up rate", ">= 1.0x full pipeline", shown,
                      c.ratio >= 1.0 and not c.timed_out))  # fmt: skip
        found.append(("catch-up ordering", "0 violations", f"{c.order_violations} violations",
                      c.order_violations == 0))  # fmt: skip
        growth = c.memory_growth()[0]
        found.append(("catch-up worker memory", f"flat (last <= {MEMORY_GROWTH_MAX}x first)",
                      f"{growth:.2f}x", growth <= MEMORY_GROWTH_MAX))  # fmt: skip
    return found
