"""PostgreSQL and Redis servers of a scenario's own, on their own ports, so that a scenario can
stop, restart or lose them without touching the machine's servers or anyone else's tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import redis

from tests.procs import Running, free_port, run_process, wait_until


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"{name} not found (install PostgreSQL's server package)")
    return str(candidates[-1])


class PrivatePostgres:
    """A throwaway cluster: initdb into a temporary directory, trust authentication."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="si-pg-"))
        self.data = self.dir / "data"
        # initdb and postgres refuse to run as root: run them as the postgres user.
        self.runas = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.runas:
            shutil.chown(self.dir, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self.runas, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def _ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "server.log")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-m", "fast",
                  "-o", options, action)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop")

    def restart(self) -> None:
        self._ctl("restart")

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def private_redis(port: int) -> Iterator[Running]:
    """A Redis server on `port` (start it again on the same port after stopping it)."""
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with run_process("redis", [*args, "--appendonly", "no"], {}) as server:
        client = redis.Redis(port=port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(answers, 10)
        finally:
            client.close()
        yield server
