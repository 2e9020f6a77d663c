"""A run's options, its databases and Redis namespaces (made with tests/databases.py), the
environment our processes get there, and the bench's log line."""

from __future__ import annotations

import contextlib
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests import databases
from tests.procs import REPO_ROOT

WORK = REPO_ROOT / "bench" / ".work"
SECRET = "whsec_bench_0123456789abcdef"
WORKER_PROCESSES = 2


@dataclass(frozen=True)
class Options:
    """`python -m bench`'s options (see bench/__main__.py)."""

    duration: float = 10.0
    connections: int = 32
    threads: int = 2
    events: int = 10_000
    warmup: int = 500
    repeats: int = 3
    quick: bool = False
    output: Path = REPO_ROOT / "bench" / "RESULTS.md"
    strict: bool = False
    retention_events: int = 1_000_000  # bench/retention.py: old events purged under load, per cycle
    retention_cycles: int = 5
    backlog: int = 1_000_000  # bench/catchup.py
    sizes: str = "0,1000000,10000000"

    @property
    def size_list(self) -> list[int]:
        """The growth bench's table sizes, in order."""
        return sorted({int(n) for n in self.sizes.split(",") if n.strip()})


def say(*parts: object) -> None:
    print("bench:", *parts, file=sys.stderr, flush=True)


@dataclass
class Space:
    """This run's databases (copies of one migrated template) and namespaces; `close` drops
    and deletes whatever is left."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    redis_url: str = field(
        default_factory=lambda: f"{databases.REDIS_BASE_URL}/{databases.free_redis_db(14)}"
    )
    names: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def database(self, label: str, like: str = "") -> str:
        """A new database: a copy of the one at URL `like`, or of the migrated template."""
        if not self.names:
            self.names.append(f"bench_{self.run_id}_template")
            databases.create_database(self.names[0])
        self.names.append(f"bench_{self.run_id}_{label}")
        return databases.create_database(self.names[-1], template=_name(like) or self.names[0])

    def drop(self, url: str) -> None:
        databases.drop_database(_name(url))
        self.names.remove(_name(url))

    def namespace(self, label: str) -> str:
        self.namespaces.append(f"bench-{self.run_id}-{label}")
        return self.namespaces[-1]

    def env(self, database_url: str, namespace: str) -> dict[str, str]:
        return {
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_NAMESPACE": namespace,
            "WORKER_PROCESSES": str(WORKER_PROCESSES),
        }

    def close(self) -> None:
        for name in reversed(self.names):
            with contextlib.suppress(psycopg.Error):
                databases.drop_database(name)
        for namespace in self.namespaces:
            databases.delete_namespace(self.redis_url, namespace)


def _name(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url).get("dbname", "")) if url else ""
