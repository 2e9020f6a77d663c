"""Masking of personal and secret values inside free text (log lines, stored errors)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SECRET = re.compile(r"\b(whsec|sk|rk|pk)_(live|test)?_?[A-Za-z0-9]{6,}")
_DIGITS = re.compile(r"\b\d{13,19}\b")
# PostgreSQL's DETAIL, HINT, CONTEXT and QUERY lines quote the row, the statement or the values.
_DB_DETAIL = re.compile(r"^\s*(DETAIL|HINT|CONTEXT|QUERY|LINE \d+):.*$\n?", re.MULTILINE)
# In one-line text (a log field), DETAIL or CONTEXT runs to the end of the line.
_DB_DETAIL_INLINE = re.compile(r"\b(DETAIL|CONTEXT|HINT):[^\n]*|Failing row contains[^\n]*")
SECRET_KEYS = {"secret", "secrets", "password", "api_key", "authorization", "payload", "body"}


def redact(value: str) -> str:
    """Mask e-mail addresses, Stripe keys or signing secrets, card numbers and PostgreSQL's
    error details (they quote the failing row) in free text."""
    # Substring checks first: every line passes here, and most values hold neither.
    if "@" in value:
        value = _EMAIL.sub("***@***", value)
    if "k_" in value or "whsec_" in value:
        value = _SECRET.sub(r"\1_***", value)
    if "DETAIL:" in value or "CONTEXT:" in value or "HINT:" in value or "Failing row" in value:
        value = _DB_DETAIL_INLINE.sub("(details withheld)", value)
    return _DIGITS.sub(_mask_card, value)


def _mask_card(match: re.Match[str]) -> str:
    """A card number (13 to 19 digits that pass the Luhn check) becomes `****`."""
    digits = match.group(0)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return "****" if total % 10 == 0 else digits


def without_db_detail(text: str) -> str:
    """`text` (an error message or a traceback) without PostgreSQL's DETAIL-like lines."""
    return _DB_DETAIL.sub("", text)
