"""Realistic, distinct, signed Stripe events built from the corpus shapes.

Every event gets its own id; objects are rewritten onto one of `customers` synthetic customers
(subscription per customer, invoice and charge per event) so the billing mirror sees a real
lifecycle mix; bodies are pretty-printed like Stripe's and padded (through `metadata`) to a size
between 1.5 and 6 KB around the template's own size.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
CORPUS_EVENTS = REPO / "tests" / "fixtures" / "stripe-corpus" / "events"
MIN_BODY = 1536
MAX_BODY = 6144

# (corpus file stem, weight, rewrite kind). Weighted towards what a billing run sends.
TEMPLATES: tuple[tuple[str, float, str], ...] = (
    ("stripe-sync-engine__customer_updated__1", 5, "customer"),
    ("stripe-ruby-mock__customer.created__1", 2, "customer"),
    ("stripe-ruby-mock__customer.subscription.created__1", 3, "subscription"),
    ("stripe-sync-engine__subscription_updated__1", 10, "subscription"),
    ("stripe-ruby-mock__customer.subscription.updated__1", 5, "subscription"),
    ("stripe-sync-engine__subscription_deleted__1", 2, "subscription"),
    ("stripe-ruby-mock__invoice.created__1", 6, "invoice"),
    ("stripe-sync-engine__invoice_finalized__1", 6, "invoice"),
    ("stripe-sync-engine__invoice_paid__1", 8, "invoice"),
    ("stripe-ruby-mock__invoice.payment_succeeded__1", 8, "invoice"),
    ("stripe-ruby-mock__invoice.payment_failed__1", 3, "invoice"),
    ("stripe-sync-engine__charge_succeeded__1", 8, "charge"),
    ("stripe-ruby-mock__charge.succeeded__1", 2, "charge"),
    ("stripe-sync-engine__charge_refunded__1", 2, "charge"),
    ("stripe-sync-engine__charge_failed__1", 2, "charge"),
    ("stripe-sync-engine__payment_intent_succeeded__1", 6, "payment_intent"),
    ("stripe-sync-engine__payment_intent_created__1", 4, "payment_intent"),
    ("stripe-ruby-mock__checkout.session.completed__1", 2, "checkout"),
    ("stripe-sync-engine__charge_dispute_created__1", 1, "dispute"),
    ("stripe-sync-engine__product_updated__1", 2, "other"),
    ("stripe-sync-engine__price_updated__1", 2, "other"),
)


@dataclass(frozen=True, slots=True)
class BenchEvent:
    id: str
    type: str
    customer: str | None
    body: bytes


def customer_id(n: int) -> str:
    return f"cus_bench{n:05d}"


def _load_templates() -> list[tuple[dict[str, Any], float, str]]:
    loaded = []
    for stem, weight, kind in TEMPLATES:
        path = CORPUS_EVENTS / f"{stem}.json"
        event = orjson.loads(path.read_bytes())
        loaded.append((event, weight, kind))
    return loaded


def _rewrite(event: dict[str, Any], kind: str, index: int, tag: str, cus: str) -> str | None:
    """Point the object at customer `cus`; returns the customer the event names, if any."""
    obj: dict[str, Any] = event["data"]["object"]
    n = cus.removeprefix("cus_bench")
    if kind == "customer":
        obj["id"] = cus
        return cus
    if kind == "subscription":
        obj["id"] = f"sub_bench{n}"
        obj["customer"] = cus
        return cus
    if kind == "invoice":
        obj["id"] = f"in_{tag}{index}"
        obj["customer"] = cus
        obj["subscription"] = f"sub_bench{n}"
        if obj.get("charge"):
            obj["charge"] = f"ch_{tag}{index}"
        return cus
    if kind == "charge":
        obj["id"] = f"ch_{tag}{index}"
        obj["customer"] = cus
        return cus
    if kind in ("payment_intent", "checkout"):
        obj["id"] = f"{'pi' if kind == 'payment_intent' else 'cs'}_{tag}{index}"
        obj["customer"] = cus
        return cus
    if kind == "dispute":
        obj["id"] = f"dp_{tag}{index}"
        obj["charge"] = f"ch_bench{n}"
        return None
    obj["id"] = f"{str(obj.get('id', 'obj')).split('_')[0]}_{tag}{index}"
    return None


def _pad(event: dict[str, Any], target: int) -> bytes:
    body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
    missing = target - len(body)
    if missing <= 0:
        return body
    obj = event["data"]["object"]
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        metadata = obj["metadata"] = {}
    # The key and its quoting cost ~30 bytes once indented.
    metadata["bench_note"] = "x" * max(1, missing - 30)
    body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
    for _ in range(3):
        off = len(body) - target
        if off == 0:
            break
        metadata["bench_note"] = "x" * max(1, len(metadata["bench_note"]) - off)
        body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
    return body


def generate(
    count: int, *, tag: str, customers: int = 500, seed: int = 7, created_base: int | None = None
) -> list[BenchEvent]:
    """`count` distinct events; ids `evt_<tag>_<n>`; creation order follows the index."""
    rng = random.Random(seed)
    templates = _load_templates()
    raw = [orjson.dumps(t[0]) for t in templates]
    weights = [t[1] for t in templates]
    kinds = [t[2] for t in templates]
    base = created_base if created_base is not None else int(time.time()) - 86_400
    events: list[BenchEvent] = []
    for index in range(count):
        which = rng.choices(range(len(templates)), weights)[0]
        event = orjson.loads(raw[which])
        cus = customer_id(rng.randrange(customers))
        named = _rewrite(event, kinds[which], index, tag, cus)
        event["id"] = f"evt_{tag}_{index:07d}"
        event["created"] = base + index // 8  # one-second resolution: ties are common
        event["livemode"] = False
        natural = len(orjson.dumps(event, option=orjson.OPT_INDENT_2))
        low = max(natural, MIN_BODY)
        high = max(low, min(int(natural * 1.3), MAX_BODY))
        if natural > MAX_BODY:
            raise ValueError(f"template {kinds[which]} is over {MAX_BODY} bytes")
        body = _pad(event, rng.randint(low, high))
        events.append(BenchEvent(event["id"], event["type"], named, body))
    return events


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's scheme: `t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def write_wrk_files(
    events: Sequence[BenchEvent], secret: str, directory: Path, threads: int
) -> tuple[list[Path], int]:
    """One request file per wrk thread (round-robin split), signed now.

    Record format: `<Stripe-Signature>\\t<body length>\\n<body>`. Returns the files and the
    signing timestamp.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    paths = [directory / f"requests-{i}.bin" for i in range(threads)]
    handles = [p.open("wb") for p in paths]
    try:
        for i, event in enumerate(events):
            header = sign(event.body, secret, now)
            out = handles[i % threads]
            out.write(f"{header}\t{len(event.body)}\n".encode())
            out.write(event.body)
    finally:
        for handle in handles:
            handle.close()
    return paths, now


def signed_requests(events: Iterable[BenchEvent], secret: str) -> list[tuple[bytes, str]]:
    now = int(time.time())
    return [(e.body, sign(e.body, secret, now)) for e in events]


def size_summary(events: Sequence[BenchEvent]) -> dict[str, float]:
    sizes = sorted(len(e.body) for e in events)
    return {
        "min": sizes[0],
        "median": sizes[len(sizes) // 2],
        "mean": sum(sizes) / len(sizes),
        "max": sizes[-1],
        "customers": len({e.customer for e in events if e.customer}),
        "types": len({e.type for e in events}),
    }
