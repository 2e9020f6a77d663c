"""`python -m worker`: run `dramatiq worker.entry:boot` as a child and keep it running.

Dramatiq's main process stops every worker process when one dies (a SIGKILL, the OOM killer), then
exits; this supervisor starts it again, with backoff. SIGTERM/SIGINT are forwarded once (Dramatiq
then lets in-flight messages finish) and the supervisor exits when the child has. The child runs
in its own process group, so a signal sent to our group (honcho, a terminal's Ctrl-C) reaches
Dramatiq once, through us: a second SIGTERM would make Dramatiq's workers exit at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from types import FrameType

import structlog

from shared.logging import configure_logging
from shared.settings import Settings, SettingsError

log = structlog.get_logger(__name__)

RET_IMPORT = 2  # Dramatiq's exit code when a module does not import (a configuration error)
_PR_SET_PDEATHSIG = 1
_RESTART_MIN_S, _RESTART_MAX_S = 0.5, 30.0
# A child that ran this long was healthy: the next restart is quick again.
_HEALTHY_AFTER_S = 60.0
# Dramatiq's Redis consumer backs off up to its worker timeout (default 1000 ms) while a queue is
# empty, so the first message after a quiet spell waited up to a second. Its CLI has no option:
# the worker reads `dramatiq_worker_timeout` from its environment (an operator's value wins).
IDLE_POLL_MS = 100


def dramatiq_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.entry:boot",
        "--processes",
        str(settings.worker_processes),
        "--threads",
        str(settings.worker_threads),
    ]


def _in_own_group_dying_with_parent() -> None:
    """Runs in the child before exec: own process group; SIGTERM when the supervisor dies."""
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.stop = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.metrics_dir: str | None = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        first = not self.stop.is_set()
        self.stop.set()
        child = self.child
        if first and child is not None and child.poll() is None:
            log.info("worker.supervisor_stopping", signal=signal.Signals(signum).name)
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    def _start(self) -> subprocess.Popen[bytes]:
        # Dramatiq's Prometheus middleware shares metrics between processes through files;
        # each child gets a fresh directory so a restart never counts a dead process twice.
        if self.metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir = tempfile.mkdtemp(prefix="stripe-ingest-metrics-")
        env = os.environ.copy()  # passed through unchanged, plus where metrics go
        env["dramatiq_prom_db"] = self.metrics_dir
        env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir
        env.setdefault("dramatiq_worker_timeout", str(IDLE_POLL_MS))
        return subprocess.Popen(self.command, env=env, preexec_fn=_in_own_group_dying_with_parent)

    @staticmethod
    def _reap_group(pgid: int, grace_s: float = 10.0) -> None:
        """Stop what is left of a dead child's group (its workers, if it was SIGKILLed)."""
        deadline = time.monotonic() + grace_s
        sig: int = signal.SIGTERM
        while True:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                sig = signal.SIGKILL
            time.sleep(0.2)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        delay = _RESTART_MIN_S
        starts = 0
        try:
            while True:
                started = time.monotonic()
                self.child = self._start()
                starts += 1
                log.info("worker.supervisor_started", pid=self.child.pid, start=starts)
                if self.stop.is_set():  # a signal between fork and registration
                    self.child.send_signal(signal.SIGTERM)
                code = self.child.wait()
                self._reap_group(self.child.pid)
                if self.stop.is_set():
                    log.info("worker.supervisor_stopped", code=code)
                    return 0 if code in (0, -signal.SIGTERM) else code
                if code == RET_IMPORT and starts == 1:
                    log.error("worker.configuration_error", code=code)
                    return RET_IMPORT
                if time.monotonic() - started > _HEALTHY_AFTER_S:
                    delay = _RESTART_MIN_S
                log.error("worker.child_exited", code=code, restart_in_s=delay)
                if self.stop.wait(delay):
                    return 0
                delay = min(delay * 2, _RESTART_MAX_S)
        finally:
            if self.metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)


def main() -> int:
    try:
        settings = Settings.from_env()
        settings.check_api_key_mode()
    except SettingsError as e:
        sys.stderr.write(f"worker: {e}\n")
        return 2
    configure_logging(settings)
    return Supervisor(dramatiq_command(settings)).run()
