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
