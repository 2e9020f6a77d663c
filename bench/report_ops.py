"""The Backfill and Retention sections of bench/RESULTS.md and their targets."""

from __future__ import annotations

from bench.backfill import DAYS, LATENCY, LIMIT, Backfill
from bench.retention import Retention
from bench.verdict import LATENCIES, VERDICT, Target, table


def backfill_targets(b: Backfill) -> list[Target]:
    seq, par = b.run("sequential"), b.run("parallel")
    shown = (
        f"{b.speedup:.2f}x ({par.events_per_s:,.0f} vs {seq.events_per_s:,.0f} events/s fetched)"
    )
    found = [Target("backfill parallel fetch", ">= 3x sequential", shown, b.speedup >= 3)]
    busiest = max(r.busiest_second for r in b.runs)
    limited = sum(r.rate_limited for r in b.runs)
    shown = f"{par.requests_per_s:.1f}/s average, busiest second {busiest}, {limited} 429s"
    passed = busiest <= LIMIT and limited == 0
    found.append(Target("backfill request rate", f"<= {LIMIT}/s, no 429", shown, passed))
    exact = all(r.exact for r in b.runs)
    shown = "every event stored once (both runs)" if exact else "counts differ: see Backfill"
    found.append(Target("backfill completeness", "every event stored once", shown, exact))
    return found


def backfill_lines(b: Backfill) -> list[str]:
    out = [
        "## Backfill\n",
        f"`stripe-ingest backfill --since {DAYS}d` of {b.events:,} events spread over {DAYS} "
        f"days, from the fake Stripe API answering each request in {LATENCY[0] * 1000:.0f}-"
        f"{LATENCY[1] * 1000:.0f} ms and refusing (429) more than {LIMIT} requests in a second "
        "(Stripe's test-mode limit; the client's default is 90% of it). Sequential is "
        "`--parallel 1` (one listing, page after page), the baseline, in the same run; each run "
        "into a fresh database. Fetch: the fake's first request to its last answer; wall: the "
        "whole command, storing oldest first included. The fake runs in the bench's process, on "
        "the same cores as the command and PostgreSQL.\n",
    ]
    header = "run|--parallel:|pages:|requests:|fetch s:|pages/s:|events/s:|requests/s:"
    header += "|busiest second:|429s:|wall s:|stored:"
    out += table(header, ([
        x.name, x.parallel, x.pages, x.requests, f"{x.fetch_s:.1f}", f"{x.pages_per_s:.1f}",
        f"{x.events_per_s:,.0f}", f"{x.requests_per_s:.1f}", x.busiest_second, x.rate_limited,
        f"{x.wall_s:.1f}", f"{x.stored:,}",
    ] for x in b.runs))  # fmt: skip
    seq, par = b.run("sequential"), b.run("parallel")
    out.append(
        f"Parallel vs sequential: {b.speedup:.2f}x events/s fetched, "
        f"{seq.wall_s / par.wall_s:.2f}x wall time.\n"
    )
    return out


# Retention (bench/retention.py) ---------------------------------------------------------------

SIZE_GROWTH = 1.2  # the last cycle's filled stripe_events may be this much larger than the first's


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def retention_targets(ret: Retention) -> list[Target]:
    if len(ret.runs) < 2 or not ret.cycles:
        return []
    base, load = ret.runs[0], ret.runs[1]
    ratio, purge = load.wrk.rps / base.wrk.rps, load.purge
    shown = f"{ratio:.2f}x ({load.wrk.rps:,.0f} vs {base.wrk.rps:,.0f} req/s; p99 "
    shown += f"{load.wrk.ms('p99') or 0:.1f} vs {base.wrk.ms('p99') or 0:.1f} ms)"
    durable = all(c.passed for r in ret.runs for c in r.checks)
    passed = ratio >= 0.8 and purge is not None and purge.finished and durable
    found = [Target("receiver during purge", ">= 0.8x without purge", shown, passed)]
    first, last = ret.cycles[0].filled.total, ret.cycles[-1].filled.total
    shown = f"{last / first:.2f}x ({_mb(last)} vs {_mb(first)} MB after {len(ret.cycles)} cycles)"
    goal = f"<= {SIZE_GROWTH}x the first cycle's"
    found.append(Target("stripe_events size, filled", goal, shown, last <= SIZE_GROWTH * first))
    every = [c.purge for c in ret.cycles] + ([purge] if purge else [])
    right = ret.kept == ret.kept_expected and all(p.finished for p in every)
    shown = f"{ret.kept:,} of {ret.kept_expected:,} young events left; every purge finished"
    found.append(
        Target("purge deletes only the old", "young and pending events stay", shown, right)
    )
    return found


def retention_lines(ret: Retention) -> list[str]:
    out = [
        "## Retention\n",
        f"Our receiver under the wrk load above, in one database holding {ret.events:,} old "
        f"finished events (filled in SQL in {ret.fill_s:.0f} s from realistic bodies), first "
        f"without purge, then while `stripe-ingest purge` (batches of {ret.batch_size}, its "
        "default pause between them) deletes "
        "them in a process of its own. Rows/s is what purge deleted over its whole run, from "
        "start to exit.\n",
    ]
    rows = []
    for x in ret.runs:
        purge = ["-"] * 5
        if p := x.purge:
            purge = [f"{p.deleted:,}", f"{p.seconds:.1f}", f"{p.rate:,.0f}", VERDICT[p.finished]]
            purge.append("yes" if x.purge_outlasted_wrk else "no")
        rows.append([
            x.label, f"{x.wrk.rps:,.0f}", *(f"{x.wrk.ms(q) or 0:.1f}" for q in LATENCIES[:4]),
            x.wrk.n("non_2xx") + x.wrk.n("socket_errors"), *purge,
        ])  # fmt: skip
    header = "run|req/s:|p50 ms:|p90 ms:|p99 ms:|p99.9 ms:|errors:|purged:|purge s:|rows/s:"
    out += table(header + "|purge finished|purge outlasted wrk", rows)
    bad = [f"{x.label}: {c.name}" for x in ret.runs for c in x.checks if not c.passed]
    out.append(
        "Durability checks (as for the receiver runs): "
        + (", ".join(bad) + " FAILED" if bad else "all pass in both runs")
        + f". Purge's command: `{ret.runs[-1].purge.command if ret.runs[-1].purge else '-'}`.\n"
    )
    out.append(
        f"Fill-and-purge cycles: each fills {ret.events:,} old finished events (with their "
        f"attempt rows) beside {ret.kept_expected:,} young ones that must stay, purges them, then "
        f"runs `VACUUM (ANALYZE)` (autovacuum on this server: {ret.autovacuum}; migration 0015 "
        "sets its thresholds where it is on). Sizes in MB: stripe_events with TOAST and indexes "
        "(total), its heap and indexes, event_attempts with its indexes; dead / free % from "
        "pgstattuple_approx after the VACUUM.\n"
    )
    rows = []
    for c in ret.cycles:
        f, a = c.filled, c.after
        bloat = f"{a.dead:.1f} / {a.free:.1f}" if a.dead is not None and a.free is not None else "-"
        rows.append([
            c.number, f"{c.fill_s:.0f}", f"{c.purge.deleted:,}", f"{c.purge.rate:,.0f}",
            f"{c.vacuum_s:.1f}", _mb(f.total), _mb(f.heap), _mb(f.indexes), _mb(f.attempts),
            _mb(a.total), _mb(a.heap), _mb(a.indexes), _mb(a.attempts), bloat,
        ])  # fmt: skip
    header = "cycle|fill s:|purged:|rows/s:|VACUUM s:|filled total:|heap:|indexes:|attempts:"
    out += table(header + "|after total:|heap:|indexes:|attempts:|dead / free %:", rows)
    return out
