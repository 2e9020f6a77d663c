"""The bench's own databases, Redis namespace and processes; it cleans up only what it made."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from shared.db import with_database
from shared.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
VENV_BIN = REPO / ".venv" / "bin"


# The machine counts as quiet below this share of all its cores busy.
QUIET_SHARE = 0.15


def machine_busy_share(seconds: float) -> float:
    """The share of all cores busy over the next `seconds` (from /proc/stat)."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    total0, idle0 = read()
    time.sleep(seconds)
    total1, idle1 = read()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


@dataclass
class Databases:
    """Fresh databases on the admin URL's server, each migrated; all dropped by `drop_all`."""

    admin_url: str
    run_id: str
    created: list[str] = field(default_factory=list)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def settle(self, timeout_s: float = 15.0) -> float:
        """Start the next run from the same quiet state: PostgreSQL writes what the previous
        run left dirty (CHECKPOINT), the kernel writes back dirty pages (sync), then wait until
        the machine is mostly idle (background writes, autovacuum and dropped databases of the
        previous run no longer compete). Returns the seconds waited."""
        started = time.monotonic()
        with self._admin() as conn:
            conn.execute("CHECKPOINT")
        os.sync()  # and the files of the databases dropped since: written back before, not during
        while time.monotonic() - started < timeout_s:
            if machine_busy_share(0.5) < QUIET_SHARE:
                break
        return time.monotonic() - started

    def fresh(self, label: str) -> str:
        name = f"bench_{self.run_id}_{label}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        url = with_database(self.admin_url, name)
        migrate(url)
        return url

    def clone(self, source_url: str, label: str) -> str:
        source = psycopg.conninfo.conninfo_to_dict(source_url)["dbname"]
        name = f"bench_{self.run_id}_{label}"
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(str(source))
                )
            )
        self.created.append(name)
        return with_database(self.admin_url, name)

    def drop(self, url: str) -> None:
        name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(psycopg.Error):
                self.drop(with_database(self.admin_url, name))


@dataclass
class RedisSpace:
    """Dramatiq namespaces of this run in one Redis database; `cleanup` deletes only their keys."""

    base_url: str
    db: int
    run_id: str
    namespaces: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{self.db}"

    def namespace(self, label: str) -> str:
        name = f"bench-{self.run_id}-{label}"
        self.namespaces.append(name)
        return name

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def enqueued_ids(self, namespace: str, queue: str) -> list[str]:
        """Event ids of the messages held for `queue` (waiting, in flight, or delayed)."""
        import orjson

        from shared.broker import message_event_ids

        client = self.client()
        try:
            ids: list[str] = []
            for key in (f"{namespace}:{queue}.msgs", f"{namespace}:{queue}.DQ.msgs"):
                for raw in client.hvals(key):
                    message = orjson.loads(raw)
                    ids.extend(message_event_ids(message["actor_name"], message["args"]))
            return ids
        finally:
            client.close()

    def cleanup(self) -> None:
        client = self.client()
        try:
            for namespace in self.namespaces:
                keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
                keys += list(client.scan_iter(match=f"{namespace}", count=1000))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()


def pick_redis_db(base_url: str) -> int:
    """An empty Redis database index from the top (keys are namespaced anyway)."""
    for index in range(14, 0, -1):
        client = redis.Redis.from_url(f"{base_url.rstrip('/')}/{index}")
        try:
            if client.dbsize() == 0:
                return index
        finally:
            client.close()
    return 14


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile_command(name: str) -> list[str]:
    """The Procfile's command for `name`, split; `python` resolves to the venv's."""
    for line in (REPO / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.split()
    raise KeyError(f"Procfile has no {name!r} process")


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """A child in its own process group, logging to a file; `stop` ends that group only."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        cwd.mkdir(parents=True, exist_ok=True)
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("ab")
        argv0 = self.argv[0]
        if argv0 == "python":
            argv0 = str(VENV_BIN / "python")
        self.popen = subprocess.Popen(
            [argv0, *self.argv[1:]],
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive():
            # The root only: a supervisor stops its own children in order.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Children that outlived their parent are still in our group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()
        return self.popen.returncode


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout}s:\n{proc.log_tail()}")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def _status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class Memory:
    """Peak RSS (VmHWM) per process of a tree, sampled until `stop`."""

    peaks_kb: dict[int, int] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)

    @property
    def tree_mb(self) -> float:
        return sum(self.peaks_kb.values()) / 1024

    @property
    def largest_mb(self) -> float:
        return max(self.peaks_kb.values(), default=0) / 1024

    def largest_command(self) -> str:
        if not self.peaks_kb:
            return ""
        pid = max(self.peaks_kb, key=lambda p: self.peaks_kb[p])
        return self.commands.get(pid, "")

    def merge(self, other: Memory) -> None:
        for pid, kb in other.peaks_kb.items():
            self.peaks_kb[pid] = max(kb, self.peaks_kb.get(pid, 0))
        self.commands.update(other.commands)


@contextlib.contextmanager
def watch_memory(root: int, interval: float = 0.25) -> Iterator[Memory]:
    memory = Memory()
    stop = threading.Event()

    def sample() -> None:
        for pid in process_tree(root):
            hwm = _status_kb(pid, "VmHWM")
            if hwm is None:
                continue
            if pid not in memory.commands:
                memory.commands[pid] = _cmdline(pid)
            memory.peaks_kb[pid] = max(hwm, memory.peaks_kb.get(pid, 0))

    def loop() -> None:
        while not stop.wait(interval):
            sample()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield memory
    finally:
        sample()
        stop.set()
        thread.join()


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def say(*parts: object) -> None:
    print("bench:", *parts, file=sys.stderr, flush=True)
