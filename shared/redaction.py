"""Masking of personal and secret values inside free text (log lines, stored errors)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SECRET = re.compile(r"\b(whsec|sk|rk|pk)_(live|test)?_?[A-Za-z0-9]{6,}")
SECRET_KEYS = {"secret", "secrets", "password", "api_key", "authorization", "payload", "body"}


def redact(value: str) -> str:
    """Mask e-mail addresses and Stripe keys or signing secrets inside free text."""
    # Substring checks first: every line passes here, and most values hold neither.
    if "@" in value:
        value = _EMAIL.sub("***@***", value)
    if "k_" in value or "whsec_" in value:
        value = _SECRET.sub(r"\1_***", value)
    return value
