"""The overview's chart of failures per hour: an inline SVG drawn on the server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

WIDTH, HEIGHT, GAP = 480, 90, 2


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    failed_y: float
    failed_h: float
    dead_y: float
    dead_h: float
    label: str


def bars(hours: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars (failed attempts, then dead-lettering ones), one per hour, scaled to the
    largest hour; each with a label for its tooltip."""
    if not hours:
        return {"width": WIDTH, "height": HEIGHT, "bars": [], "peak": 0, "total": 0}
    peak = max(h["failed"] + h["dead"] for h in hours)
    step = WIDTH / len(hours)
    scale = (HEIGHT - 2) / peak if peak else 0.0
    drawn = []
    for i, h in enumerate(hours):
        dead_h = h["dead"] * scale
        failed_h = h["failed"] * scale
        when = h["hour"].astimezone(UTC).strftime("%Y-%m-%d %H:00 UTC")
        drawn.append(
            Bar(
                x=round(i * step + GAP / 2, 2),
                width=round(step - GAP, 2),
                failed_y=round(HEIGHT - failed_h - dead_h, 2),
                failed_h=round(failed_h, 2),
                dead_y=round(HEIGHT - dead_h, 2),
                dead_h=round(dead_h, 2),
                label=f"{when}: {h['failed']} failed, {h['dead']} dead-lettered",
            )
        )
    total = sum(h["failed"] + h["dead"] for h in hours)
    return {"width": WIDTH, "height": HEIGHT, "bars": drawn, "peak": peak, "total": total}
