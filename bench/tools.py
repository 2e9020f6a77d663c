"""wrk and py-spy: found, or installed (apt-get as root; pip into the venv), or a clear command."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import VENV_BIN, say

LUA = Path(__file__).resolve().parent / "wrk_requests.lua"


class MissingTool(RuntimeError):
    pass


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise MissingTool("wrk is not installed; install it with: sudo apt-get install -y wrk")
    say("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise MissingTool("apt-get did not provide wrk; install it with: apt-get install -y wrk")
    return found


def ensure_py_spy() -> str:
    candidate = VENV_BIN / "py-spy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("py-spy")
    if found:
        return found
    say("installing py-spy into .venv with pip")
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pip", "install", "-q", "py-spy"], capture_output=True
    )
    if result.returncode != 0 or not candidate.exists():
        raise MissingTool(
            "py-spy is not installed; install it with: .venv/bin/python -m pip install py-spy\n"
            + result.stderr.decode(errors="replace")[-500:]
        )
    return str(candidate)


@dataclass
class WrkResult:
    command: str
    stdout: str
    requests: int = 0
    duration_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    latency_us: dict[str, float] = field(default_factory=dict)
    sent: int = 0
    total_prepared: int = 0
    wraps: int = 0
    ok: int = 0
    ok_ids: list[str] = field(default_factory=list)
    cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(self.statuses.values())

    @property
    def socket_errors(self) -> int:
        return sum(v for k, v in self.errors.items() if k != "status")


def run_wrk(
    url: str,
    request_dir: Path,
    out: Path,
    *,
    threads: int,
    connections: int,
    duration: float,
    timeout_s: int = 10,
) -> WrkResult:
    wrk = ensure_wrk()
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(LUA),
        url,
    ]
    env = {**os.environ, "BENCH_REQ_DIR": str(request_dir), "BENCH_WRK_OUT": str(out)}
    out.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=duration + 120
    )
    if completed.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    shown = " ".join(["wrk", *argv[1:]]).replace(str(LUA), "bench/wrk_requests.lua")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result = WrkResult(command=shown, stdout=completed.stdout, cpu_s=cpu)
    _parse(result, out.read_text())
    return result


def _parse(result: WrkResult, text: str) -> None:
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key == "ok_id":
            result.ok_ids.append(parts[1])
        elif key == "requests":
            result.requests = int(float(parts[1]))
        elif key == "duration_us":
            result.duration_s = float(parts[1]) / 1e6
        elif key.startswith("errors_"):
            result.errors[key.removeprefix("errors_")] = int(float(parts[1]))
        elif key.startswith("latency_"):
            result.latency_us[key.removeprefix("latency_").removesuffix("_us")] = float(parts[1])
        elif key == "thread_sent":
            result.sent += int(float(parts[2]))
        elif key == "thread_total":
            result.total_prepared += int(float(parts[2]))
        elif key == "thread_wraps":
            result.wraps += int(float(parts[2]))
        elif key == "thread_ok":
            result.ok += int(float(parts[2]))
        elif key == "status":
            result.statuses[parts[1]] = result.statuses.get(parts[1], 0) + int(float(parts[2]))


def python_version() -> str:
    return sys.version.split()[0]
