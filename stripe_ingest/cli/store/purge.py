"""Queries of `purge`: its cutoff, the count and the batches."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import LiteralString, cast

from stripe_ingest.cli.store.base import Connection, _one, translated

# Along `stripe_events_processed_at` (migrations 0014, 0018), which holds finished events only: a
# batch reads the rows it deletes (and the few dead events between them), and intake (whose rows
# are pending, without a processed_at) never pays for it. Every finish sets processed_at.
_PURGEABLE: LiteralString = "status IN ('processed', 'ignored') AND processed_at < %(cutoff)s"


def purge_cutoff(conn: Connection, age: timedelta) -> datetime:
    """The database's now minus `age`: fixed for a whole purge, so it ends."""
    row = _one(conn, "SELECT now() - %(age)s AS cutoff", {"age": age})
    assert row is not None
    return cast(datetime, row["cutoff"])


def count_purgeable(conn: Connection, cutoff: datetime) -> int:
    row = _one(
        conn, "SELECT count(*) AS n FROM stripe_events WHERE " + _PURGEABLE, {"cutoff": cutoff}
    )
    assert row is not None
    return int(row["n"])


# Oldest first, from where the previous batch ended (the index's dead entries behind it are not
# walked again); a row locked by someone else (a replay) is skipped, and is the next purge's.
# FOR UPDATE re-checks the status of a row changed since the snapshot: a replayed one stays.
PURGE_BATCH: LiteralString = (
    "WITH gone AS ("
    " DELETE FROM stripe_events WHERE id = ANY(ARRAY("
    " SELECT id FROM stripe_events WHERE " + _PURGEABLE + " AND processed_at >= %(after)s"
    " ORDER BY processed_at LIMIT %(size)s FOR UPDATE SKIP LOCKED))"
    " RETURNING processed_at AS finished"
    ") SELECT count(*) AS n, max(finished) AS last FROM gone"
)


def purge_batch(
    conn: Connection, cutoff: datetime, after: datetime, size: int
) -> tuple[int, datetime]:
    """Deletes up to `size` purgeable events finished at or after `after`, oldest first, in one
    short transaction (their attempt log and dead letters go by cascade); returns how many and
    where the next batch starts."""
    with translated(), conn.transaction():
        # A batch lost in a crash is deleted again by the next purge: its commit need not wait
        # for the disk, nor make intake's commits wait behind its WAL.
        conn.execute("SET LOCAL synchronous_commit = off")
        # Not prepared: a generic plan would not know how narrow the range is.
        params = {"cutoff": cutoff, "after": after, "size": size}
        row = conn.execute(PURGE_BATCH, params, prepare=False).fetchone()
    assert row is not None
    return int(row["n"]), row["last"] or after
