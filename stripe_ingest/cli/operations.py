"""What the CLI and the console both do to events: replay them and resolve dead letters, with one
set of rules (checks, audit rows, enqueue after each commit). Messages are one line, for people.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import error_line
from shared.settings import Settings
from stripe_ingest.cli import store

REASON_CHARS = 500


class Refused(Exception):
    """The request cannot be carried out as asked; nothing was changed. One line."""


def operator() -> str:
    """Who runs the CLI: the login name."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


class Enqueuer:
    """Enqueues after each commit; counts what Redis refused instead of failing the replay."""

    def __init__(self, settings: Settings) -> None:
        from shared.broker import make_broker

        self.settings = settings
        self.broker = make_broker(settings)
        self.sent = 0
        self.failed = 0
        self.error: str | None = None

    def send(self, ids: Sequence[str]) -> None:
        from shared.broker import enqueue_events

        try:
            self.sent += enqueue_events(self.broker, ids)
        except Exception as e:  # redis-py raises several unrelated types
            self.failed += len(ids)
            self.error = error_line(e)

    def close(self) -> str | None:
        """Close the broker; a warning line when some ids could not be enqueued."""
        self.broker.close()
        if not self.failed:
            return None
        return (
            f"{self.failed} event(s) are pending but could not be enqueued ({self.error}); "
            f"the sweeper enqueues them within {self.settings.sweeper_lease_seconds:g}s "
            "of a working Redis"
        )


def check_replayable(conn: store.Connection, ids: Sequence[str], force: bool) -> None:
    """Refuse unknown ids, and finished ones unless forced."""
    found = store.statuses(conn, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise Refused("unknown event id(s): " + ", ".join(missing))
    finished = [i for i in ids if found[i] in ("processed", "ignored")]
    if finished and not force:
        listed = ", ".join(f"{i} ({found[i]})" for i in finished)
        raise Refused(
            f"already finished: {listed}; pass --force to run them again "
            "(handlers are idempotent and stale-protected)"
        )


@dataclass
class Replayed:
    audit_id: int
    matched: int
    ids: list[str] = field(default_factory=list)
    enqueued: int = 0
    warning: str | None = None

    @property
    def skipped(self) -> int:
        return self.matched - len(self.ids)


def replay(
    conn: store.Connection,
    settings: Settings,
    ids: Sequence[str],
    *,
    who: str,
    mode: str,
    described: dict[str, Any],
    force: bool = False,
    via: str = "cli",
    batch_size: int = 200,
    progress: Callable[[int], None] | None = None,
) -> Replayed:
    """Put `ids` back to pending in batches, audited, enqueueing each batch after its commit."""
    audit_id = store.start_audit(conn, who, mode, described, force, len(ids), via=via)
    result = Replayed(audit_id=audit_id, matched=len(ids))
    enqueuer = Enqueuer(settings)
    try:
        for start in range(0, len(ids), batch_size):
            batch = list(ids[start : start + batch_size])
            replayed = store.replay_batch(conn, audit_id, batch, force)
            enqueuer.send(replayed)
            result.ids.extend(replayed)
            if progress is not None:
                progress(len(batch))
        store.finish_audit(conn, audit_id)
    finally:
        result.warning = enqueuer.close()
        result.enqueued = enqueuer.sent
    return result


def clean_reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise Refused("give a reason: it is kept with the dead letter and in the audit")
    if len(text) > REASON_CHARS:
        raise Refused(f"the reason is {len(text)} characters; at most {REASON_CHARS}")
    return text


@dataclass
class Resolved:
    ids: list[str]
    already: dict[str, str]  # id -> who resolved it before
    changed: list[str]  # replayed or changed between the check and the update


def resolve(
    conn: store.Connection, ids: Sequence[str], *, who: str, reason: str, via: str = "cli"
) -> Resolved:
    """Resolve the open dead letters `ids`; refuse (changing nothing) if any id is unknown or not
    dead. Ones resolved before are left as they are and reported."""
    reason = clean_reason(reason)
    ids = list(dict.fromkeys(ids))
    states = store.dead_states(conn, ids)
    missing = [i for i in ids if i not in states]
    if missing:
        raise Refused("unknown event id(s): " + ", ".join(missing))
    alive = [f"{i} ({states[i]['status']})" for i in ids if states[i]["status"] != "dead"]
    if alive:
        raise Refused("not dead, nothing resolved: " + ", ".join(alive))
    already = {i: str(states[i]["resolved_by"]) for i in ids if states[i]["resolved_at"]}
    wanted = [i for i in ids if i not in already]
    done = store.resolve(conn, wanted, who, reason, via) if wanted else []
    return Resolved(ids=done, already=already, changed=[i for i in wanted if i not in done])
