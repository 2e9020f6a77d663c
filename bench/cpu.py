"""Where the CPU went during a run: the measured server, PostgreSQL, Redis, the load generator,
everything else, and idle (from /proc, per process, in CPU seconds)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.infra import process_tree

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> dict[int, tuple[str, float]]:
    found: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry)] = (comm, (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def _machine() -> tuple[float, float]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, idle / _TICK


@dataclass
class CpuSnapshot:
    per_pid: dict[int, tuple[str, float]]
    busy: float
    idle: float


def snapshot() -> CpuSnapshot:
    busy, idle = _machine()
    return CpuSnapshot(_proc_cpu(), busy, idle)


@dataclass
class CpuShare:
    """CPU seconds per category over a run, and the run's wall time."""

    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    idle: float = 0.0
    # The whole machine's busy CPU seconds (from /proc/stat).
    busy: float = 0.0
    # What `other` was, by process name.
    others: dict[str, float] = field(default_factory=dict)

    def percent(self, category: str) -> float:
        """Of one core: 100 means one core fully busy."""
        return 100 * self.seconds.get(category, 0.0) / self.wall if self.wall else 0.0


def share(
    before: CpuSnapshot,
    after: CpuSnapshot,
    wall: float,
    groups: dict[str, Iterable[int]],
) -> CpuShare:
    """Attribute each process's CPU delta to the first group holding its pid (or its tree), then
    to postgres / redis / wrk by name, else `other`; what the machine was busy with beyond that
    (processes that exited during the run, the kernel) is `unattributed`."""
    pid_group: dict[int, str] = {}
    for name, roots in groups.items():
        for root in roots:
            for pid in process_tree(root):
                pid_group.setdefault(pid, name)
    result = CpuShare(wall=wall, idle=after.idle - before.idle)
    for pid, (comm, total) in after.per_pid.items():
        start = before.per_pid.get(pid)
        delta = total - (start[1] if start and start[0] == comm else 0.0)
        if delta <= 0:
            continue
        if pid in pid_group:
            category = pid_group[pid]
        elif comm.startswith("postgres"):
            category = "postgres"
        elif comm.startswith("redis"):
            category = "redis"
        elif comm == "wrk":
            category = "wrk"
        else:
            category = "other"
            result.others[comm] = result.others.get(comm, 0.0) + delta
        result.seconds[category] = result.seconds.get(category, 0.0) + delta
    busy = after.busy - before.busy
    result.busy = busy
    result.seconds["unattributed"] = max(0.0, busy - sum(result.seconds.values()))
    return result
