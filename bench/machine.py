"""What the figures were measured on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys

import psycopg
import redis

from bench.infra import REPO

PACKAGES = (
    "uvicorn", "uvloop", "httptools", "starlette", "dramatiq", "redis", "psycopg",
    "psycopg-pool", "orjson", "stripe", "structlog",
)  # fmt: skip


def _first(path: str, key: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def describe(admin_url: str, redis_url: str, wrk: str | None) -> dict[str, str]:
    info: dict[str, str] = {}
    info["CPU"] = _first("/proc/cpuinfo", "model name")
    info["cores"] = f"{os.cpu_count()} (nproc {_run(['nproc']) or '?'})"
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    info["memory"] = f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else mem_kb
    info["kernel"] = platform.release()
    info["Python"] = sys.version.split()[0]
    try:
        with psycopg.connect(admin_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["PostgreSQL"] = str(row[0]) if row else "?"
            for setting in ("synchronous_commit", "shared_buffers", "max_connections"):
                row = conn.execute(f"SHOW {setting}").fetchone()
                info[f"PostgreSQL {setting}"] = str(row[0]) if row else "?"
    except psycopg.Error as e:
        info["PostgreSQL"] = f"unreachable ({e})"
    client = redis.Redis.from_url(redis_url)
    try:
        info["Redis"] = str(client.info("server").get("redis_version", "?"))
    except redis.RedisError as e:
        info["Redis"] = f"unreachable ({e})"
    finally:
        client.close()
    if wrk:
        info["wrk"] = _run([wrk, "-v"]).splitlines()[0] if _run([wrk, "-v"]) else "?"
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    info["packages"] = ", ".join(versions)
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    info["commit"] = f"{commit}{' (with uncommitted changes)' if dirty else ''}"
    return info


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
