"""stripe-ingest: queue-decoupled Stripe webhook ingestion (receiver, workers, billing mirror).

The installed distribution's face: its version, and the `stripe-ingest` command in `cli`.
"""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["__version__"]

__version__ = version("stripe-ingest")
