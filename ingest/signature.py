"""Stripe-Signature verification with Stripe's own scheme, tried against every secret."""

from __future__ import annotations

from stripe import SignatureVerificationError, WebhookSignature


class SignatureRejected(Exception):
    """The request is not signed by any of our secrets; `code` is the contract's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


MISSING = "missing_signature"
INVALID = "invalid_signature"


def verify(payload: str, header: str | None, secrets: tuple[str, ...], tolerance: int) -> None:
    """Accept when any secret (rotation) verifies the header within `tolerance` seconds.

    The tolerance is always passed: Stripe's function skips the timestamp check without it.
    """
    if header is None:
        raise SignatureRejected(MISSING)
    if not header or tolerance <= 0:
        raise SignatureRejected(INVALID)
    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance)
        except SignatureVerificationError:
            continue
        return
    raise SignatureRejected(INVALID)
