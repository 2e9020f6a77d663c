"""Small pure rules of processing: the per-key lock id, the retry backoff, error text."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from shared.redaction import redact, without_db_detail

_ERROR_CHARS = 500
_TRACEBACK_CHARS = 20_000


def key_lock_id(ordering_key: str) -> int:
    """A signed 64-bit advisory lock id for an ordering key, the same on every host."""
    digest = hashlib.blake2b(ordering_key.encode(), digest_size=8, person=b"si-order").digest()
    return int.from_bytes(digest, "big", signed=True)


def backoff_ms(
    failures: int, min_ms: int, max_ms: int, rand: Callable[[], float] = random.random
) -> int:
    """Delay before the next attempt after `failures` failed ones (1, 2, ...).

    Exponential from `min_ms` (doubling per failure) capped at `max_ms`, with jitter: a uniform
    draw from the upper half of that ceiling, so retries of many events spread out. Never below
    `min_ms`.
    """
    ceiling = min(max_ms, min_ms * 2 ** min(max(failures - 1, 0), 40))
    return max(min_ms, int(ceiling * (0.5 + rand() / 2)))


def traceback_text(text: str) -> str:
    return redact(without_db_detail(text))[-_TRACEBACK_CHARS:]
