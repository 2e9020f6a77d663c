"""A large synthetic Events API history for the fake: corpus events with unique ids, spread evenly
over the last `days` days (several in some seconds, as at Stripe), the oldest a minute inside
that window, so that `--since {days}d` given a moment later still covers them all."""

from __future__ import annotations

import time
from typing import Any

from tests.support import corpus_files, load_event


def event_history(
    count: int, days: float, tag: str, now: float | None = None
) -> list[dict[str, Any]]:
    """`count` events created over the `days` days before `now`, oldest first. Copies are
    shallow (they share their `data`), so that 50,000 of them stay small."""
    templates = [load_event(f.name) for f in corpus_files() if "fixtures3" not in f.name]
    end = int(now if now is not None else time.time())
    span = int(days * 86400)
    return [
        {
            **templates[i % len(templates)],
            "id": f"evt_h{tag}{i:07d}",
            "created": end - span + 60 + ((span - 60) * i) // count,
        }
        for i in range(count)
    ]
