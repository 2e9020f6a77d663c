"""One error taxonomy for every process, and the one-line, redacted text of any error.

Whose fault a failure is decides what happens to it:

- `ContentError`: the event's own content (PostgreSQL refuses its row: too large for an index,
  bad text, a constraint). The receiver answers 400; a worker counts it against the event.
- `HandlerError`: a handler (ours or a user's) failed on the event: counted as an attempt.
- `Outage`: a service we depend on is unreachable (`DatabaseUnavailable`, `BrokerUnavailable`).
  Never the event's fault: the receiver answers 503, a worker leaves the row pending.
- `OperatorError` (`SettingsError`): the deployment's settings are wrong; processes exit 2.

Driver errors are translated where they are caught, with `raise ... from e`; their text goes
through `error_line`, which drops PostgreSQL's DETAIL lines (they quote row values).
"""

from __future__ import annotations

import re

import psycopg

from shared.redaction import redact

ERROR_CHARS = 500

# SQLSTATE classes that describe the data, not the server: 22 data exception (bad text, out of
# range), 23 integrity constraint, 54 program limit (an index row over ~2.7 KB).
_CONTENT_CLASSES = ("22", "23", "54")
# Connection exceptions, operator intervention (shutdown, cannot connect now), system errors.
_OUTAGE_CLASSES = ("08", "57", "58", "53")
# A value PostgreSQL quotes in a primary message (`invalid input syntax for type integer: "x"`);
# the names of relations, constraints and indexes it quotes follow a word, not a colon.
_QUOTED_VALUE = re.compile(r': "(?:[^"]|"")*"')
_DETAIL = re.compile(r"\s*\b(DETAIL|HINT|CONTEXT|QUERY|LINE \d+):.*", re.DOTALL)


class StripeIngestError(Exception):
    """The base of our own errors; the message is one line, safe to log."""


class OperatorError(StripeIngestError, ValueError):
    """The deployment is misconfigured; the message tells the operator what to change."""


class SettingsError(OperatorError):
    """A setting is missing or malformed."""


class Outage(StripeIngestError):
    """A service we depend on could not be reached; nobody's fault, retried later."""


class DatabaseUnavailable(Outage):
    """PostgreSQL could not be reached or lost the connection; callers answer 503 or exit 1."""


class BrokerUnavailable(Outage):
    """Redis (the Dramatiq broker) could not be reached."""


class ContentError(StripeIngestError):
    """The event's content cannot be stored or applied as it is."""


class HandlerError(StripeIngestError):
    """A handler failed on the event."""


def error_line(error: BaseException, *, with_type: bool = True) -> str:
    """One redacted line naming the error, at most ERROR_CHARS long. A driver error gives its
    SQLSTATE and primary message with quoted values masked, never PostgreSQL's DETAIL, HINT or
    CONTEXT (they quote the failing row's values)."""
    text = str(error)
    if isinstance(error, psycopg.Error):
        primary = error.diag.message_primary
        text = primary if primary else _DETAIL.sub("", text)
        if error.sqlstate:
            text = f"SQLSTATE {error.sqlstate}: {text}"
        text = _QUOTED_VALUE.sub(': "***"', text)
    text = " ".join(text.split())
    if with_type:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return redact(text or type(error).__name__)[:ERROR_CHARS]


def is_outage(error: BaseException, conn: psycopg.Connection[object] | None = None) -> bool:
    """True when the error means the database is out of reach (not the work's fault)."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        state = getattr(error, "sqlstate", None)
        return state is None or state[:2] in _OUTAGE_CLASSES
    return isinstance(error, Outage)


def is_conflict(error: BaseException) -> bool:
    """True for a deadlock or a serialization failure (SQLSTATE class 40): concurrent
    transactions collided, and running the same work again is expected to succeed."""
    state = getattr(error, "sqlstate", None)
    return isinstance(error, psycopg.Error) and state is not None and state.startswith("40")


def is_content_error(error: BaseException) -> bool:
    """True when PostgreSQL refused the data itself (see _CONTENT_CLASSES)."""
    state = getattr(error, "sqlstate", None)
    return isinstance(error, psycopg.Error) and state is not None and state[:2] in _CONTENT_CLASSES


def translate_db_error(
    error: psycopg.Error, conn: psycopg.Connection[object] | None = None
) -> StripeIngestError:
    """The taxonomy's error for a driver error (raise it `from error`)."""
    if is_outage(error, conn):
        return DatabaseUnavailable(error_line(error, with_type=False))
    if is_content_error(error):
        return ContentError(error_line(error))
    return StripeIngestError(error_line(error))
