"""Start our real processes in tests (and in bench/), and always stop them.

    with run_worker(env, processes=2, threads=8) as worker:   # `python -m worker`
        ...
    with run_sweeper(env) as sweeper:                         # `python -m worker.sweeper`
        ...
    with run_web(env) as base_url:                            # `python -m ingest` on a free port
        httpx.post(f"{base_url}/webhooks/stripe", ...)
    with run_server(name, argv, env, port) as running:        # any server with GET /healthz
        ...

Each process gets only the given env (plus PATH/HOME/locale and PYTHONPATH=repo root, so test
modules such as `tests.worker.handlers` can be named in USER_HANDLERS), runs in a private
working directory (a developer's `.env` never leaks in), and writes its output to a log file
(`running.logs()`; dumped into the failure report by `dump_logs_on_failure`). On exit the process
gets SIGTERM, a few seconds to finish, then SIGKILL for it and every descendant it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "USER", "LOGNAME")
# What Dramatiq prints once per worker process when it consumes.
WORKER_READY_LINE = "Worker process is ready for action."


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> None:
    """Poll until `predicate()` is truthy; raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout:.1f}s")
        time.sleep(interval)


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time) of a live process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of `pid`: {pid: start time} (start time guards against pid reuse)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None:
                children.setdefault(info[0], []).append((int(entry.name), info[1]))
    found: dict[int, int] = {}
    stack = [pid]
    while stack:
        for child, started in children.get(stack.pop(), []):
            if child not in found:
                found[child] = started
                stack.append(child)
    return found


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    workdir: Path
    _seen: dict[int, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def descendants(self) -> dict[int, int]:
        found = descendants(self.proc.pid)
        self._seen.update(found)
        return found

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.logs()}")
            return self.logs().count(text) >= count

        try:
            wait_until(seen, timeout, interval=0.1)
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: {text!r} x{count} not logged:\n{self.logs()}"
            ) from None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL it and everything it started."""
        self.descendants()
        if self.alive():
            self.send(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                self.descendants()
                time.sleep(0.05)
        self.descendants()
        for pid, started in [(self.proc.pid, None), *self._seen.items()]:
            info = _stat(pid)
            if info is not None and (started is None or info[1] == started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    base = {k: os.environ[k] for k in _PASS_THROUGH if k in os.environ}
    base["PYTHONPATH"] = str(REPO_ROOT)
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env)
    return base


@contextlib.contextmanager
def run_process(
    name: str, args: list[str], env: Mapping[str, str], *, stop_timeout: float = 5.0
) -> Iterator[Running]:
    workdir = Path(tempfile.mkdtemp(prefix=f"si-{name}-"))
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            args,
            env=child_env(env),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Running(name=name, proc=proc, log_path=log_path, workdir=workdir)
    try:
        yield running
    finally:
        running.stop(timeout=stop_timeout)
        _RECENT.append(running)
        del _RECENT[:-6]


# The last few processes, so a failing test can show what they logged.
_RECENT: list[Running] = []


def forget_recent() -> None:
    _RECENT.clear()


def recent_logs() -> str:
    return "\n".join(f"----- {r.name} (pid {r.pid}) -----\n{r.logs()[-6000:]}" for r in _RECENT)


@contextlib.contextmanager
def run_worker(
    env: Mapping[str, str],
    processes: int = 1,
    threads: int = 4,
    *,
    wait_ready: bool = True,
    stop_timeout: float = 5.0,
) -> Iterator[Running]:
    """`python -m worker` (the Procfile's `worker`: a supervisor around `dramatiq worker.entry`).

    Metrics go to a free port unless WORKER_METRICS_PORT is given. With `wait_ready`, returns once
    every Dramatiq worker process consumes.
    """
    full = {
        "WORKER_PROCESSES": str(processes),
        "WORKER_THREADS": str(threads),
        "WORKER_METRICS_PORT": str(free_port()),
        **env,
    }
    with run_process(
        "worker", [sys.executable, "-m", "worker"], full, stop_timeout=stop_timeout
    ) as running:
        if wait_ready:
            running.wait_for_log(WORKER_READY_LINE, count=processes, timeout=60)
        yield running


@contextlib.contextmanager
def run_sweeper(env: Mapping[str, str], *, stop_timeout: float = 5.0) -> Iterator[Running]:
    """`python -m worker.sweeper`; its metrics port is free unless SWEEPER_METRICS_PORT is given."""
    full = {"SWEEPER_METRICS_PORT": str(free_port()), **env}
    with run_process(
        "sweeper", [sys.executable, "-m", "worker.sweeper"], full, stop_timeout=stop_timeout
    ) as running:
        yield running


@contextlib.contextmanager
def run_server(
    name: str,
    args: list[str],
    env: Mapping[str, str],
    port: int,
    *,
    timeout: float = 30.0,
    stop_timeout: float = 5.0,
) -> Iterator[Running]:
    """A process serving HTTP on `port`; yields once its GET /healthz answers 200."""
    with run_process(name, args, env, stop_timeout=stop_timeout) as running:

        def healthy() -> bool:
            if not running.alive():
                raise RuntimeError(f"{name} exited ({running.proc.returncode}):\n{running.logs()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return bool(r.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(healthy, timeout, interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"{name} not healthy within {timeout}s:\n{running.logs()}") from None
        yield running


@contextlib.contextmanager
def run_web(
    env: Mapping[str, str], *, timeout: float = 30.0, stop_timeout: float = 5.0
) -> Iterator[str]:
    """`python -m ingest` on a free port; yields its base URL once GET /healthz answers 200."""
    port = free_port()
    with run_server(
        "web",
        [sys.executable, "-m", "ingest"],
        {**env, "PORT": str(port)},
        port,
        timeout=timeout,
        stop_timeout=stop_timeout,
    ):
        yield f"http://127.0.0.1:{port}"


@dataclass
class Served:
    url: str
    process: Running


@contextlib.contextmanager
def run_console(env: Mapping[str, str], *, timeout: float = 30.0) -> Iterator[Served]:
    """`python -m stripe_ingest.console` on a free port; yields its base URL and process once
    /healthz answers. CONSOLE_TOKEN must be in `env`."""
    port = free_port()
    full = {**env, "CONSOLE_PORT": str(port)}
    base_url = f"http://127.0.0.1:{port}"
    with run_process("console", [sys.executable, "-m", "stripe_ingest.console"], full) as running:

        def healthy() -> bool:
            if not running.alive():
                raise RuntimeError(f"console exited ({running.proc.returncode}):\n{running.logs()}")
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_until(healthy, timeout, interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"console not up within {timeout}s:\n{running.logs()}") from None
        yield Served(base_url, running)
