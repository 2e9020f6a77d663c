"""A target's verdict and the Markdown tables of bench/RESULTS.md (shared by its sections)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

VERDICT = {True: "PASS", False: "FAIL"}
LATENCIES = ("p50", "p90", "p99", "p99.9", "max")


class Target(NamedTuple):
    name: str
    goal: str
    measured: str
    passed: bool


def table(header: str, rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table; a column whose header ends in ':' is right-aligned."""
    names = header.split("|")
    lines = ["| " + " | ".join(n.removesuffix(":") for n in names) + " |"]
    lines.append("| " + " | ".join("---:" if n.endswith(":") else "---" for n in names) + " |")
    return [*lines, *("| " + " | ".join(map(str, row)) + " |" for row in rows), ""]
