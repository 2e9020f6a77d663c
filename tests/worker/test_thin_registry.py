"""The `Event` API for both kinds of event, and `also_thin`: what a handler sees (no database:
these are the public contract's plain objects)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support import thin_event
from worker.registry import Event, Fetched, NotFetched, Registry, Tx

CREATED = datetime(2026, 10, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def snapshot_event() -> Event:
    payload = {
        "id": "evt_snap",
        "object": "event",
        "data": {"object": {"id": "in_1"}, "previous_attributes": {"status": "open"}},
    }
    return Event(
        "evt_snap", "invoice.paid", CREATED, False, "2025-03-31.basil", None, "cus_1", payload
    )


def thin(payload: dict[str, Any] | None = None, fetched: Fetched | None = None) -> Event:
    body = payload or thin_event(
        "v1.invoice.paid", "invoice", "in_1", "evt_thin", snapshot_event="evt_snap"
    )
    return Event(
        "evt_thin",
        body["type"],
        CREATED,
        False,
        None,
        "acct_1",
        "in_1",
        body,
        kind="thin",
        snapshot_event=body.get("snapshot_event"),
        fetched=fetched,
    )


def test_a_snapshot_event_reads_as_before() -> None:
    event = snapshot_event()
    assert (event.thin, event.object, event.previous_attributes) == (
        False,
        {"id": "in_1"},
        {"status": "open"},
    )
    assert (event.changes, event.related_object, event.read_at) == ({}, None, None)
    assert (event.as_of, event.snapshot_type, event.twin_key) == (
        CREATED,
        "invoice.paid",
        "evt_snap",
    )


def test_a_thin_event_gives_the_object_read_and_its_changes_on_demand() -> None:
    read_at = CREATED + timedelta(seconds=3)
    loads: list[int] = []

    def load() -> dict[str, Any]:
        loads.append(1)
        return {"changes": {"before": {"status": "open"}, "after": {"status": "paid"}}}

    event = thin(fetched=Fetched({"id": "in_1", "status": "paid"}, read_at, load))
    assert event.object == {"id": "in_1", "status": "paid"}
    assert event.related_object == {"id": "in_1", "type": "invoice", "url": "/v1/invoices/in_1"}
    assert (event.read_at, event.as_of) == (read_at, read_at)
    assert (event.snapshot_type, event.twin_key) == ("invoice.paid", "evt_snap")
    assert loads == []  # nothing read until a handler asks
    assert event.previous_attributes == {"status": "open"}
    assert event.changes["after"] == {"status": "paid"}
    assert loads == [1]  # read once


def test_a_read_before_the_events_created_counts_as_of_created() -> None:
    event = thin(fetched=Fetched({"id": "in_1"}, CREATED - timedelta(seconds=2)))
    assert event.as_of == CREATED  # our clock may lag Stripe's


def test_a_thin_events_object_before_it_was_read_is_an_error() -> None:
    with pytest.raises(NotFetched):
        _ = thin().object


def test_also_thin_registers_a_snapshot_handler_for_its_v1_thin_types() -> None:
    registry = Registry()
    seen: list[tuple[str, str, dict[str, Any]]] = []

    @registry.also_thin
    @registry.handles("invoice.paid", "invoice.payment_failed")
    def on_invoice(tx: Tx, event: Event) -> None:
        seen.append((event.type, event.id, event.object))

    registry.also_thin(on_invoice)  # twice: still one registration
    assert sorted(registry.handled_types()) == [
        "invoice.paid",
        "invoice.payment_failed",
        "v1.invoice.paid",
        "v1.invoice.payment_failed",
    ]
    [wrapper] = registry.handlers_for("v1.invoice.paid")
    event = thin(fetched=Fetched({"id": "in_1"}, CREATED))
    wrapper(Tx(conn=None, settings=None), event)  # type: ignore[arg-type]
    assert seen == [("invoice.paid", "evt_thin", {"id": "in_1"})]

    registry.unregister(on_invoice)
    assert registry.handled_types() == set()


def test_also_thin_needs_a_snapshot_type() -> None:
    registry = Registry()

    def nothing(tx: Tx, event: Event) -> None: ...

    with pytest.raises(ValueError, match="handles no snapshot type"):
        registry.also_thin(nothing)
