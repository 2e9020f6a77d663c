"""Helpers tests share: Stripe's real signing scheme and the corpus fixtures."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "stripe-corpus"


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header exactly as Stripe builds it: HMAC-SHA256 of `t.payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def corpus_files() -> list[Path]:
    return sorted((CORPUS / "events").glob("*.json"))


def load_event(name: str) -> dict[str, Any]:
    """A corpus event by file name (with or without `.json`); the openapi one is unwrapped."""
    path = CORPUS / "events" / (name if name.endswith(".json") else f"{name}.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def fixtures3() -> dict[str, Any]:
    """Stripe's openapi `fixtures3.json` resources: current-API example objects."""
    data: dict[str, Any] = json.loads((CORPUS / "openapi" / "fixtures3.json").read_text())
    resources: dict[str, Any] = data["resources"]
    return resources


def unique_event(name: str, suffix: str) -> dict[str, Any]:
    """A corpus event with an id made unique: corpus ids repeat (see SUMMARY.md)."""
    event = load_event(name)
    event["id"] = f"evt_{Path(name).stem}_{suffix}".replace(".", "_")
    return event


STRIPE_PYTHON_THIN = FIXTURES / "stripe-python-thin"
# Where Stripe's API serves each v1 object the mirror keeps (a thin event's related_object.url).
V1_PATHS = {
    "customer": "/v1/customers/",
    "subscription": "/v1/subscriptions/",
    "invoice": "/v1/invoices/",
    "charge": "/v1/charges/",
    "dispute": "/v1/disputes/",
    "refund": "/v1/refunds/",
    "billing.meter": "/v1/billing/meters/",
}


def stripe_python_thin_events() -> list[Path]:
    """The thin event notifications of stripe-python's own tests (see their PROVENANCE)."""
    return sorted(p for p in STRIPE_PYTHON_THIN.glob("*.json") if not p.name.startswith("related"))


def thin_event(
    event_type: str,
    related_type: str,
    related_id: str,
    event_id: str,
    *,
    created: str = "2026-10-01T12:00:00.250Z",
    snapshot_event: str | None = None,
    context: str | None = None,
    livemode: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A thin event notification (`"object": "v2.core.event"`) as Stripe sends it."""
    event: dict[str, Any] = {
        "id": event_id,
        "object": "v2.core.event",
        "type": event_type,
        "livemode": livemode,
        "created": created,
        "related_object": {
            "id": related_id,
            "type": related_type,
            "url": V1_PATHS[related_type] + related_id,
        },
        "reason": {"type": "request", "request": {"id": "req_thin", "idempotency_key": None}},
        **extra,
    }
    if snapshot_event is not None:
        event["snapshot_event"] = snapshot_event
    if context is not None:
        event["context"] = context
    return event
