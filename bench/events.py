"""Realistic, distinct Stripe events built from corpus shapes, and their signed requests.

Every event gets its own id; objects are rewritten onto one of `customers` synthetic customers
(subscription per customer, invoice and charge per event) so the billing mirror sees a real
lifecycle mix; bodies are pretty-printed like Stripe's and padded (through `metadata`) to a size
between 1.5 and 6 KB around the template's own size.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.space import SECRET
from tests.support import CORPUS, sign

MIN_BODY, MAX_BODY = 1536, 6144
_S, _R = "stripe-sync-engine__", "stripe-ruby-mock__"
# Corpus event (file stem) and weight: weighted towards what a billing run sends.
TEMPLATES: dict[str, float] = {
    f"{_S}customer_updated__1": 5, f"{_R}customer.created__1": 2,
    f"{_R}customer.subscription.created__1": 3, f"{_S}subscription_updated__1": 10,
    f"{_R}customer.subscription.updated__1": 5, f"{_S}subscription_deleted__1": 2,
    f"{_R}invoice.created__1": 6, f"{_S}invoice_finalized__1": 6, f"{_S}invoice_paid__1": 8,
    f"{_R}invoice.payment_succeeded__1": 8, f"{_R}invoice.payment_failed__1": 3,
    f"{_S}charge_succeeded__1": 8, f"{_R}charge.succeeded__1": 2, f"{_S}charge_refunded__1": 2,
    f"{_S}charge_failed__1": 2, f"{_S}payment_intent_succeeded__1": 6,
    f"{_S}payment_intent_created__1": 4, f"{_R}checkout.session.completed__1": 2,
    f"{_S}charge_dispute_created__1": 1, f"{_S}product_updated__1": 2, f"{_S}price_updated__1": 2,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class BenchEvent:
    id: str
    type: str
    customer: str | None
    body: bytes


def _rewrite(obj: dict[str, Any], index: int, tag: str, cus: str) -> str | None:
    """Point the object at customer `cus`; returns the customer the event names, if any."""
    kind, n = obj.get("object"), cus.removeprefix("cus_bench")
    if kind == "customer":
        obj["id"] = cus
        return cus
    if kind == "subscription":
        obj["id"] = f"sub_bench{n}"
    elif kind == "dispute":
        obj["id"], obj["charge"] = f"dp_{tag}{index}", f"ch_bench{n}"
        return None
    else:
        obj["id"] = f"{str(obj.get('id', 'obj')).split('_')[0]}_{tag}{index}"
        if kind in ("product", "price"):
            return None
    obj["customer"] = cus
    if kind == "invoice":
        obj["subscription"] = f"sub_bench{n}"
        if obj.get("charge"):
            obj["charge"] = f"ch_{tag}{index}"
    return cus


def _pad(event: dict[str, Any], target: int) -> bytes:
    body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
    if len(body) >= target:
        return body
    obj = event["data"]["object"]
    if not isinstance(obj.get("metadata"), dict):
        obj["metadata"] = {}
    metadata = obj["metadata"]
    # The key and its quoting cost ~30 bytes once indented.
    metadata["bench_note"] = "x" * max(1, target - len(body) - 30)
    for _ in range(4):
        body = orjson.dumps(event, option=orjson.OPT_INDENT_2)
        if len(body) == target:
            break
        metadata["bench_note"] = "x" * max(1, len(metadata["bench_note"]) - len(body) + target)
    return body


def generate(count: int, *, tag: str, customers: int = 500, seed: int = 7) -> list[BenchEvent]:
    """`count` distinct events; ids `evt_<tag>_<n>`; creation order follows the index."""
    rng = random.Random(seed)
    raw = [(CORPUS / "events" / f"{stem}.json").read_bytes() for stem in TEMPLATES]
    weights = list(TEMPLATES.values())
    base = int(time.time()) - 86_400
    events: list[BenchEvent] = []
    for index in range(count):
        event = orjson.loads(raw[rng.choices(range(len(raw)), weights)[0]])
        cus = f"cus_bench{rng.randrange(customers):05d}"
        named = _rewrite(event["data"]["object"], index, tag, cus)
        # `created` has one-second resolution: ties are common.
        event.update(id=f"evt_{tag}_{index:07d}", created=base + index // 8, livemode=False)
        natural = len(orjson.dumps(event, option=orjson.OPT_INDENT_2))
        if natural > MAX_BODY:
            raise ValueError(f"template of {event['type']} is over {MAX_BODY} bytes")
        low = max(natural, MIN_BODY)
        body = _pad(event, rng.randint(low, max(low, min(int(natural * 1.3), MAX_BODY))))
        events.append(BenchEvent(event["id"], event["type"], named, body))
    return events


def write_wrk_files(events: Sequence[BenchEvent], directory: Path, threads: int) -> None:
    """One request file per wrk thread (round-robin), signed now:
    `<Stripe-Signature>\t<body length>\n<body>` per request."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(threads):
        requests = signed_requests(events[i::threads])
        records = (f"{sig}\t{len(body)}\n".encode() + body for body, sig in requests)
        (directory / f"requests-{i}.bin").write_bytes(b"".join(records))


def signed_requests(events: Iterable[BenchEvent]) -> list[tuple[bytes, str]]:
    now = int(time.time())
    return [(e.body, sign(e.body, SECRET, now)) for e in events]
