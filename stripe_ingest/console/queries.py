"""What each page shows, read through the CLI's store (the console has no SQL of its own)."""

from __future__ import annotations

import json
from typing import Any

from shared.settings import Settings
from stripe_ingest.cli import store
from stripe_ingest.cli.customers import COLUMNS
from stripe_ingest.console.chart import bars

PAGE = 50
GROUP_ROWS = 10  # dead letters listed under each group
CHART_HOURS = 24
LAG_MINUTES = 5


def overview(settings: Settings) -> dict[str, Any]:
    with store.session(settings.database_url) as conn:
        stats = store.stats(conn, LAG_MINUTES)
        lag = store.recent_lag(conn, LAG_MINUTES)
        hours = store.failures_by_hour(conn, CHART_HOURS)
        groups = store.summary(conn, store.Filter(limit=5))
        group_count = store.count_groups(conn, store.Filter())
    return {
        "stats": stats,
        "lag": lag,
        "lag_minutes": LAG_MINUTES,
        "chart": bars(hours),
        "chart_hours": CHART_HOURS,
        "groups": groups,
        "group_count": group_count,
    }


def pages(total: int, page: int) -> dict[str, Any]:
    last = max(1, -(-total // PAGE))
    first = (page - 1) * PAGE + 1
    # A listing's count stops past store.COUNT_CAP: "more than" it, and the pager goes on.
    capped = store.COUNT_CAP if total > store.COUNT_CAP else None
    return {"page": page, "last": max(last, page + 1) if capped else last, "first_row": first,
            "total": total, "capped": capped}  # fmt: skip


def events(settings: Settings, flt: store.Filter, page: int) -> dict[str, Any]:
    paged = store.Filter(
        status=flt.status,
        type=flt.type,
        customer=flt.customer,
        limit=PAGE,
        offset=(page - 1) * PAGE,
    )
    with store.session(settings.database_url) as conn:
        rows = store.list_events(conn, paged)
        total = store.count_events(conn, paged)
    return {"events": rows, "shown": len(rows), **pages(total, page)}


def event(settings: Settings, event_id: str) -> dict[str, Any] | None:
    with store.session(settings.database_url) as conn:
        row = store.get_event(conn, event_id)
        if row is None:
            return None
        found = {
            "attempts": store.attempts(conn, event_id),
            "dead_letter": store.dead_letter(conn, event_id),
            "replays": store.replays_of(conn, event_id),
            "resolutions": store.resolutions_of(conn, event_id),
        }
    payload = row.pop("payload")
    # Shown to the operator, escaped by the template; never logged.
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    return {"event": row, "payload": text, **found}


def dead_letters(settings: Settings, event_type: str | None, page: int) -> dict[str, Any]:
    flt = store.Filter(type=event_type, limit=PAGE, offset=(page - 1) * PAGE)
    with store.session(settings.database_url) as conn:
        groups = store.summary(conn, flt)
        total = store.count_groups(conn, flt)
        letters = store.count_dead(conn, store.Filter(type=event_type))
        firsts = store.first_of_groups(conn, [(g["type"], g["error"]) for g in groups], GROUP_ROWS)
        for group in groups:
            group["letters"] = firsts[(group["type"], group["error"])]
    return {"groups": groups, "letters": letters, "type": event_type, **pages(total, page)}


def bulk_plan(settings: Settings, event_type: str, error: str) -> dict[str, Any]:
    """What a bulk action on one group would take: the count and the first ids."""
    flt = store.Filter(type=event_type, error=error)
    with store.session(settings.database_url) as conn:
        count = store.count_dead(conn, flt)
        preview = store.list_dead(conn, store.Filter(type=event_type, error=error, limit=20))
    return {"count": count, "preview": preview}


def customer(settings: Settings, customer_id: str, page: int) -> dict[str, Any] | None:
    flt = store.Filter(customer=customer_id, limit=PAGE, offset=(page - 1) * PAGE)
    with store.session(settings.database_url) as conn:
        mirror = store.mirror_of(conn, customer_id)
        timeline = store.list_events(conn, flt)
        total = store.count_events(conn, flt)
        if total == 0 and not any(mirror.values()):
            return None
        access = store.access_of(conn, customer_id)
    columns = {t: [c for c in COLUMNS[t] if c in rows[0]] for t, rows in mirror.items() if rows}
    return {
        "customer_id": customer_id,
        "mirror": mirror,
        "columns": columns,
        "access": access,
        "events": timeline,
        "shown": len(timeline),
        **pages(total, page),
    }
