"""The Stripe API versions whose object shapes the mirror reads (`worker.mirror.shapes`).

Stripe names a major release twice a year (`2025-03-31.basil`); only a major release may move or
remove fields, and the monthly releases after it keep its name and only add. So a version is
known when it is a dated version from before named releases (`2020-08-27`: the older shapes,
period on the subscription, `invoice.subscription`, `invoice.charge`) or carries the name of a
release whose shapes `shapes` reads. The current shapes were checked against the objects of
stripe-python 16.1.0, pinned at 2026-10-28.endive (one field has no new place: `charge.invoice`,
gone since basil, so `charges.invoice_id` stays NULL; the invoice's payments name its charge or
payment intent).

An event of any other version (a release named after these, a `.preview` version) is still
applied as far as its fields allow; the worker counts it
(`stripe_events_unknown_api_version_total`) and `stripe-ingest stats` names it, so an account
upgrade that moves a field shows up instead of leaving silent NULLs in the mirror.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# The named releases, oldest first. A new one is added here once `shapes` reads its objects.
RELEASES = ("acacia", "basil", "clover", "dahlia", "endive")
# The first named version (2024-09-30.acacia); dated versions before it have no name.
FIRST_NAMED = date(2024, 9, 30)

_VERSION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:\.([a-z_]+))?$")


@functools.lru_cache(maxsize=256)
def is_known(api_version: str) -> bool:
    """True when the mirror reads the shapes of objects rendered at `api_version`."""
    match = _VERSION.match(api_version)
    if match is None:
        return False
    year, month, day, name = match.groups()
    try:
        day_of = date(int(year), int(month), int(day))
    except ValueError:
        return False
    if name is None:
        return day_of < FIRST_NAMED
    return name in RELEASES


class VersionWatch:
    """Counts the events processed at unknown versions (a labelled Prometheus counter, or
    None), and logs each such version once per process."""

    def __init__(self, counter: Any | None) -> None:
        self.counter = counter
        self.logged: set[str] = set()

    def saw(self, api_version: str | None) -> None:
        if api_version is None or is_known(api_version):
            return
        label = api_version[:64]
        if self.counter is not None:
            self.counter.labels(label).inc()
        if label not in self.logged:
            self.logged.add(label)
            log.warning("mirror.unknown_api_version", api_version=label, newest=RELEASES[-1])
