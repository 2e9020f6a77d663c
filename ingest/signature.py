"""Stripe-Signature verification: Stripe's scheme, on the raw bytes, against every secret.

Stripe signs `"{t}.{body}"` with HMAC-SHA256 and sends `t=<unix time>,v1=<hex>[,v1=...]`. The
check is done here rather than by `stripe.WebhookSignature.verify_header`, which checks one
secret per call, never refuses a timestamp in the future, and raises TypeError (not its own
error) when a signature holds a non-ASCII character. Here the header stays bytes end to end, so
any byte in it can only fail to match.
"""

from __future__ import annotations

import hmac
import time
from hashlib import sha256


class SignatureRejected(Exception):
    """The request is not signed by any of our secrets; `code` is the contract's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


MISSING = "missing_signature"
INVALID = "invalid_signature"
# Unix time has 10 digits until the year 2286; a longer `t` is not a timestamp.
_MAX_TIMESTAMP_DIGITS = 12


def signing_keys(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(secret.encode() for secret in secrets)


def verify(
    body: bytes,
    header: bytes | None,
    keys: tuple[bytes, ...],
    tolerance: int,
    now: float | None = None,
) -> None:
    """Accept when any key (rotation) signed `body` at a `t` within `tolerance` seconds of now,
    in the past or the future; else raise SignatureRejected."""
    if header is None:
        raise SignatureRejected(MISSING)
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if not signatures or not current - tolerance <= timestamp <= current + tolerance:
        raise SignatureRejected(INVALID)
    signed = b"%d." % timestamp + body
    for key in keys:
        expected = hmac.new(key, signed, sha256).hexdigest().encode()
        for signature in signatures:
            if hmac.compare_digest(expected, signature):
                return
    raise SignatureRejected(INVALID)


def _parse(header: bytes) -> tuple[int, list[bytes]]:
    """(the first `t`, every `v1`), as Stripe's own parser reads them."""
    timestamp: int | None = None
    signatures: list[bytes] = []
    for item in header.split(b","):
        key, sep, value = item.partition(b"=")
        if key == b"t" and timestamp is None:
            # bytes.isdigit() is ASCII only: no sign, no spaces, no other scripts' digits.
            if not sep or not value.isdigit() or len(value) > _MAX_TIMESTAMP_DIGITS:
                raise SignatureRejected(INVALID)
            timestamp = int(value)
        elif key == b"v1" and sep:
            signatures.append(value)
    if timestamp is None:
        raise SignatureRejected(INVALID)
    return timestamp, signatures
