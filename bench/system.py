"""The machine: what it is, where its CPU went during a run (per process tree, PostgreSQL, Redis,
wrk, everything else, idle), peak memory per process tree, and waiting until it is quiet."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.databases import admin
from tests.procs import REPO_ROOT, descendants

_TICK = os.sysconf("SC_CLK_TCK")
POSTGRES_SETTINGS = ("synchronous_commit", "shared_buffers", "max_connections")
QUIET_SHARE = 0.15  # the machine counts as quiet below this share of all its cores busy
PACKAGES = (
    "uvicorn", "uvloop", "httptools", "starlette", "dramatiq", "redis", "psycopg",
    "psycopg-pool", "orjson", "stripe", "structlog",
)  # fmt: skip


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _machine() -> tuple[float, float]:
    """Busy and idle CPU seconds of the whole machine so far."""
    values = [int(v) for v in _read("/proc/stat").split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / _TICK, (values[3] + values[4]) / _TICK


def _processes() -> dict[int, tuple[str, float]]:
    """Name and CPU seconds (user + system) of every process."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if raw := _read(f"/proc/{pid}/stat"):
            fields = raw[raw.rindex(")") + 2 :].split()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            found[int(pid)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return found


@dataclass
class Snapshot:
    per_pid: dict[int, tuple[str, float]] = field(default_factory=_processes)
    machine: tuple[float, float] = field(default_factory=_machine)
    at: float = field(default_factory=time.monotonic)


@dataclass
class CpuShare:
    """CPU seconds per category over a run's `wall` seconds; `busy` is the whole machine's."""

    wall: float
    idle: float
    busy: float
    seconds: dict[str, float] = field(default_factory=dict)
    others: dict[str, float] = field(default_factory=dict)  # what `other` was, by name

    def percent(self, category: str) -> float:
        """Of one core: 100 means one core fully busy."""
        return 100 * self.seconds.get(category, 0.0) / self.wall if self.wall else 0.0


def cpu_since(before: Snapshot, groups: dict[str, int], **exited: float) -> CpuShare:
    """Each process's CPU since `before`: to the first group whose tree holds it, else to
    postgres / redis / wrk by name, else `other`; `exited` adds what children that exited
    during the run used (by their own accounting). What else kept the machine busy (processes
    that exited, the kernel) is `unattributed`."""
    after, owner = Snapshot(), {}
    for name, root in groups.items():
        owner.update({pid: name for pid in (root, *descendants(root)) if pid not in owner})
    busy, idle = (a - b for a, b in zip(after.machine, before.machine, strict=True))
    share = CpuShare(after.at - before.at, idle, busy, seconds=dict(exited))
    for pid, (comm, total) in after.per_pid.items():
        start = before.per_pid.get(pid)
        if (delta := total - (start[1] if start and start[0] == comm else 0.0)) <= 0:
            continue
        known = next((n for n in ("postgres", "redis", "wrk") if comm.startswith(n)), "other")
        category = owner.get(pid, known)
        if category == "other":
            share.others[comm] = share.others.get(comm, 0.0) + delta
        share.seconds[category] = share.seconds.get(category, 0.0) + delta
    share.seconds["unattributed"] = max(0.0, busy - sum(share.seconds.values()))
    return share


@dataclass
class Memory:
    tree_mb: float
    largest_mb: float
    largest_command: str


def peak_memory(root: int) -> Memory:
    """The VmHWM (peak resident set so far) of each process in the tree under `root`."""
    peaks = {}
    for pid in (root, *descendants(root)):
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith("VmHWM:"):
                peaks[pid] = int(line.split()[1]) / 1024
    largest = max(peaks, key=peaks.__getitem__, default=root)
    command = _read(f"/proc/{largest}/cmdline").replace("\0", " ").strip()
    return Memory(sum(peaks.values()), peaks.get(largest, 0.0), command)


def settle(timeout_s: float = 15.0) -> float:
    """Start the next run from the same quiet state: PostgreSQL writes what the previous run
    left dirty (CHECKPOINT), the kernel writes back dirty pages (sync, the files of dropped
    databases too), then wait until the machine is mostly idle. Returns the seconds waited."""
    started = time.monotonic()
    with admin() as conn:
        conn.execute("CHECKPOINT")
    os.sync()
    while time.monotonic() - started < timeout_s:
        busy0, idle0 = _machine()
        time.sleep(0.5)  # the sampling interval
        busy1, idle1 = _machine()
        if (busy1 - busy0) / max(1e-9, busy1 - busy0 + idle1 - idle0) < QUIET_SHARE:
            break
    return time.monotonic() - started


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def describe(redis_url: str, wrk: str) -> dict[str, str]:
    """What the figures were measured on."""
    cpus = (x.split(":", 1)[1] for x in _read("/proc/cpuinfo").splitlines() if "model name" in x)
    mem_kb = _read("/proc/meminfo").split()[1]
    info = {
        "CPU": next(cpus, "?").strip(),
        "cores": f"{os.cpu_count()} (nproc {_run('nproc') or '?'})",
        "memory": f"{int(mem_kb) / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "Python": sys.version.split()[0],
    }
    with admin() as conn:
        for setting in ("server_version", *POSTGRES_SETTINGS):
            row = conn.execute(f"SHOW {setting}").fetchone()
            info[f"PostgreSQL {setting}".removesuffix(" server_version")] = str(row and row[0])
    with redis.Redis.from_url(redis_url) as client:
        info["Redis"] = str(client.info("server").get("redis_version", "?"))
    info["wrk"] = (_run(wrk, "-v").splitlines() or ["?"])[0]
    info["packages"] = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in PACKAGES)
    dirty = " (with uncommitted changes)" if _run("git", "status", "--porcelain", "-uno") else ""
    info["commit"] = _run("git", "rev-parse", "--short", "HEAD") + dirty
    return info


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())
