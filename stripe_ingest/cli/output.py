"""What commands print: aligned tables for people, JSON for machines (stdout holds only it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import click
import orjson


def _default(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2).decode()


def emit_json(value: Any) -> None:
    click.echo(dumps(value))


def cell(value: Any, width: int | None = None) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, timedelta):
        text = human_duration(value.total_seconds())
    else:
        text = " ".join(str(value).split())
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    widths: Mapping[str, int] | None = None,
    empty: str = "(none)",
) -> None:
    if not rows:
        click.echo(empty)
        return
    widths = widths or {}
    cells = [[cell(row.get(c), widths.get(c)) for c in columns] for row in rows]
    sizes = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(sizes[i]) for i, c in enumerate(columns)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(sizes[i]) for i, v in enumerate(r)).rstrip())


def pairs(items: Sequence[tuple[str, Any]]) -> None:
    size = max(len(k) for k, _ in items)
    for key, value in items:
        click.echo(f"{key.ljust(size)}  {cell(value)}")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{(seconds % 86400) // 3600:02.0f}h"


def shown(
    count: int, total: int, hint: str = "--limit N shows more", cap: int | None = None
) -> None:
    """The closing line of a capped list: how many of how many (more than `cap`: counted so far
    only)."""
    if total:
        of = f"more than {cap}" if cap is not None and total > cap else str(total)
        click.echo(f"{count} of {of} shown" + (f" ({hint})" if count < total else ""))
