"""Every SQL statement of the CLI (and of the console, which reuses it), with driver errors
translated at this boundary.

A database that does not answer becomes `DatabaseUnavailable` (exit 1, one line); any other
driver error becomes a `StoreError` with a one-line message (exit 1).
"""

from stripe_ingest.cli.store.audit import count_replays, list_replays, replays_of, resolutions_of
from stripe_ingest.cli.store.backfill import (
    abandon_run,
    create_run,
    finish_fetching,
    finish_run,
    open_run,
    plan_segments,
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
from stripe_ingest.cli.store.customers import MIRROR, access_of, mirror_of
from stripe_ingest.cli.store.dead import (
    count_groups,
    dead_states,
    first_of_groups,
    resolve,
    summary,
)
from stripe_ingest.cli.store.events import (
    COUNT_CAP,
    attempts,
    count_dead,
    count_events,
    dead_letter,
    events_by_id,
    get_event,
    list_dead,
    list_events,
    mirror_rows,
    progress,
    stats,
    table_columns,
)
from stripe_ingest.cli.store.overview import failures_by_hour, recent_lag
from stripe_ingest.cli.store.purge import count_purgeable, purge_batch, purge_cutoff
from stripe_ingest.cli.store.reconcile import (
    finish_reconcile,
    mirror_ids,
    start_reconcile,
    write_objects,
)
from stripe_ingest.cli.store.replay import (
    dead_ids,
    finish_audit,
    replay_batch,
    start_audit,
    statuses,
)

__all__ = [
    "COUNT_CAP",
    "MIRROR",
    "STATUSES",
    "Connection",
    "Filter",
    "Row",
    "StoreError",
    "abandon_run",
    "access_of",
    "attempts",
    "count_dead",
    "count_events",
    "count_groups",
    "count_purgeable",
    "count_replays",
    "create_run",
    "dead_ids",
    "dead_letter",
    "dead_states",
    "events_by_id",
    "failures_by_hour",
    "finish_audit",
    "finish_fetching",
    "finish_reconcile",
    "finish_run",
    "first_of_groups",
    "get_event",
    "list_dead",
    "list_events",
    "list_replays",
    "mirror_ids",
    "mirror_of",
    "mirror_rows",
    "open_run",
    "plan_segments",
    "progress",
    "purge_batch",
    "purge_cutoff",
    "recent_lag",
    "replay_batch",
    "replays_of",
    "resolutions_of",
    "resolve",
    "save_page",
    "session",
    "staged_count",
    "start_audit",
    "start_reconcile",
    "stats",
    "statuses",
    "store_chunk",
    "summary",
    "table_columns",
    "translated",
    "write_objects",
]
