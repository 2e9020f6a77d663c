"""py-spy profiles of a process (tree) under load, summarised for RESULTS.md."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.infra import say
from bench.tools import MissingTool, ensure_py_spy

OUR_PACKAGES = ("ingest/", "worker/", "shared/")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


@dataclass
class Profile:
    label: str
    command: str
    samples: int = 0
    self_top: list[tuple[str, float]] = field(default_factory=list)
    total_top: list[tuple[str, float]] = field(default_factory=list)
    # Each sample charged to the innermost frame in our own code (ingest/, worker/, shared/).
    ours_top: list[tuple[str, float]] = field(default_factory=list)
    raw_path: str = ""
    error: str = ""


class Recorder:
    """`py-spy record` in the background for `seconds`; `finish()` waits and summarises."""

    def __init__(self, label: str, pid: int, seconds: float, out: Path, *, subprocesses: bool):
        self.label = label
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""
        try:
            py_spy = ensure_py_spy()
        except MissingTool as e:
            self.error = str(e)
            self.command = ""
            return
        argv = [
            py_spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(out),
        ]  # fmt: skip
        if subprocesses:
            argv.append("--subprocesses")
        self.command = " ".join(["py-spy", *argv[1:]])
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self, top: int = 15) -> Profile:
        profile = Profile(self.label, self.command, raw_path=str(self.out), error=self.error)
        if self.proc is None:
            return profile
        try:
            _, err = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            profile.error = err.decode(errors="replace").strip()[-500:] or "py-spy wrote nothing"
            say(f"profile/{self.label}: {profile.error}")
            return profile
        summarise(profile, self.out.read_text(), top)
        return profile


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def summarise(profile: Profile, raw: str, top: int) -> None:
    """Self and inclusive shares per function (file-level, line numbers folded)."""
    ours_counts: Counter[str] = Counter()
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            _frame_name(f)
            for f in stack.split(";")
            if f and not f.startswith(("process ", "thread "))
        ]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        mine = [
            f
            for f in frames
            if f.split("(")[-1].startswith(OUR_PACKAGES) and "__main__.py" not in f
        ]
        ours_counts[mine[-1] if mine else "(outside our code: event loop, server, broker)"] += count
        for name in set(frames):
            total_counts[name] += count
    profile.samples = samples
    if samples:
        profile.self_top = [(n, 100 * c / samples) for n, c in self_counts.most_common(top)]
        profile.total_top = [(n, 100 * c / samples) for n, c in total_counts.most_common(top * 2)]
        profile.ours_top = [(n, 100 * c / samples) for n, c in ours_counts.most_common(top)]
