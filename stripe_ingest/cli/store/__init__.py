"""Every SQL statement of the CLI, with driver errors translated at this boundary.

A database that does not answer becomes `DatabaseUnavailable` (exit 1, one line); any other
driver error becomes a `StoreError` with a one-line message (exit 1).
"""

from stripe_ingest.cli.store.backfill import (
    abandon_run,
    create_run,
    finish_run,
    open_run,
    save_page,
    staged_count,
    store_chunk,
)
from stripe_ingest.cli.store.base import (
    STATUSES,
    Connection,
    Filter,
    Row,
    StoreError,
    session,
    translated,
)
from stripe_ingest.cli.store.events import (
    attempts,
    audits,
    count_purgeable,
    dead_ids,
    dead_letter,
    events_by_id,
    finish_audit,
    get_event,
    list_dead,
    list_events,
    mirror_rows,
    progress,
    purge_batch,
    replay_batch,
    start_audit,
    stats,
    statuses,
    table_columns,
)
from stripe_ingest.cli.store.reconcile import (
    finish_reconcile,
    mirror_ids,
    start_reconcile,
    write_objects,
)

__all__ = [
    "STATUSES",
    "Connection",
    "Filter",
    "Row",
    "StoreError",
    "abandon_run",
    "attempts",
    "audits",
    "count_purgeable",
    "create_run",
    "dead_ids",
    "dead_letter",
    "events_by_id",
    "finish_audit",
    "finish_reconcile",
    "finish_run",
    "get_event",
    "list_dead",
    "list_events",
    "mirror_ids",
    "mirror_rows",
    "open_run",
    "progress",
    "purge_batch",
    "replay_batch",
    "save_page",
    "session",
    "staged_count",
    "start_audit",
    "start_reconcile",
    "stats",
    "statuses",
    "store_chunk",
    "table_columns",
    "translated",
    "write_objects",
]
